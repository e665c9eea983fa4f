"""The README's Python example runs as written and shows what it claims."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _shift(sig: torch.Tensor, delay: int) -> torch.Tensor:
    out = torch.zeros_like(sig)
    out[:, delay:] = sig[:, : sig.shape[1] - delay]
    return out


def test_readme_python_example():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README lost its Python example"
    ns: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    assert tuple(ns["y"].shape) == (8, 100 + 12, 64)  # reference padding adds (K-1)//2 steps
    d, layer, x = ns["d"], ns["layer"], ns["x"]
    assert d.shape == (64, 140, 1) and int(d.min()) >= 0 and int(d.max()) <= 24
    # Evaluation is one integer delay per synapse: one input channel alone gives a shifted copy.
    j, i = 5, 7
    lone = torch.zeros_like(x)
    lone[:, :, i] = x[:, :, i]
    got = layer(lone)[:, :100, j]
    want = layer.weight[j, i, 0] * _shift(x[:, :, i], int(d[j, i, 0]))
    assert (got - want).abs().max() < 1e-6


def test_readme_commands_are_the_scripts_ci_runs():
    """The README's one-command set-up/test lines name scripts that exist, and CI (.ci/run)
    runs the README's test command, not a copy of it."""
    root = README.parent
    text = README.read_text()
    scripts = set(re.findall(r"^bash (scripts/[\w.-]+\.sh)\b", text, flags=re.M))
    assert {"scripts/quickstart.sh", "scripts/test.sh"} <= scripts
    for script in scripts:
        assert (root / script).is_file(), script
    tests_section = text[text.index("## Tests"):]
    assert re.search(r"```bash\nbash scripts/test\.sh\b", tests_section)
    ci = [ln.strip() for ln in (root / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert ci[-1] == "exec bash scripts/test.sh" and "export CI=true" in ci
    assert (root / "scripts" / "quickstart.sh").read_text().rstrip().endswith(
        'bin/spikedelay" train "$@"')
