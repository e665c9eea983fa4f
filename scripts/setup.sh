#!/usr/bin/env bash
# Set-up in one step: a virtual environment (.venv, or $SPIKEDELAY_VENV) with torch and spikedelay
# installed; with --test also the test extras and the Debian package espeak-ng. Safe to rerun:
# a set-up that already happened for the same pyproject.toml is not repeated.
#
# torch is installed first, by version (torch==2.13.0): pip then takes the build this machine
# offers for it (a local CPU wheel where one is configured, PyPI's CUDA build elsewhere on Linux),
# and the package's `torch>=2.2` keeps it. A torch already in the environment is kept as it is:
# for another CUDA version, install torch from pytorch.org into the environment first.
set -euo pipefail
cd "$(dirname "$0")/.."

test_extras=0
case "${1:-}" in
  --test) test_extras=1 ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--test]" >&2; exit 2 ;;
esac

venv="${SPIKEDELAY_VENV:-.venv}"
python="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: $python not found; install Python >= 3.10 (e.g. apt-get install python3 python3-venv)" >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: spikedelay needs Python >= 3.10; $python is $("$python" -V 2>&1)" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating the virtual environment $venv"
  "$python" -m venv "$venv" || {
    echo "error: could not create $venv (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 1
  }
fi
pip=("$venv/bin/python" -m pip install -q)

# Skip the pip steps when this set-up is already done for these files (a set-up with the test
# extras covers one without).
stamp="$venv/.spikedelay-setup-$(cat pyproject.toml requirements-test-nodeps.txt \
  | sha256sum | cut -c1-16)"
done_with=$(cat "$stamp" 2>/dev/null || true)
if [ "$done_with" != test ] && { [ "$test_extras" = 1 ] || [ "$done_with" != base ]; }; then
  if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0"
    "${pip[@]}" torch==2.13.0
  fi
  if [ "$test_extras" = 1 ]; then
    echo "setup: installing spikedelay (editable) with its test extras"
    "${pip[@]}" -e ".[test]"
    # Test-only packages whose declared dependencies are heavy or pull a CUDA torch:
    "${pip[@]}" --no-deps -r requirements-test-nodeps.txt
  else
    echo "setup: installing spikedelay (editable)"
    "${pip[@]}" -e .
  fi
  rm -f "$venv"/.spikedelay-setup-*
  if [ "$test_extras" = 1 ]; then echo test >"$stamp"; else echo base >"$stamp"; fi
fi

# espeak-ng speaks the SynthDigits words: needed to build SynthDigits (`spikedelay data synth`)
# and by its tests, not to train on the release that ships with the package.
if [ "$test_extras" = 1 ] && ! command -v espeak-ng >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing espeak-ng (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null \
      && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing espeak-ng (sudo apt-get)"
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng >/dev/null
  else
    echo "setup: espeak-ng is not installed and cannot be installed from here; the SynthDigits" \
         "builder tests will skip (install it with: sudo apt-get install espeak-ng)" >&2
  fi
fi
