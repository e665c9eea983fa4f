"""Every example in the docs runs: the docstring examples (``>>>``) of the package's modules and
of the Markdown pages in docs/ (and the README) that contain any. ~10 s.

Modules and pages are found by searching for ``>>>``, so a new example is tested for free; the
core modules below must keep at least one. Examples run in a fresh temporary working folder, so
one that writes files (a run folder, an export) leaves nothing in the checkout. In Markdown the
code-fence lines (```) are blanked before parsing, so an expected output may end right above a
closing fence.
"""

from __future__ import annotations

import doctest
import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "spikedelay"
MUST_HAVE_EXAMPLES = ["spikedelay.delays", "spikedelay.neurons", "spikedelay.model",
                      "spikedelay.config"]
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules_with_examples() -> list[str]:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        if ">>>" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(found | set(MUST_HAVE_EXAMPLES))


def _pages_with_examples() -> list[str]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
    return [str(p.relative_to(ROOT)) for p in pages
            if p.is_file() and re.search(r"^\s*>>> ", p.read_text(encoding="utf-8"), re.M)]


def _run(tests: list[doctest.DocTest]) -> tuple[int, int, str]:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    report: list[str] = []
    for test in tests:
        runner.run(test, out=report.append)
    return runner.failures, runner.tries, "".join(report)


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mod = importlib.import_module(module)
    failures, tries, report = _run(doctest.DocTestFinder().find(mod, module))
    assert tries > 0, f"{module} has no docstring example (>>>) any more"
    assert failures == 0, report


def _markdown_doctest(text: str, name: str) -> doctest.DocTest:
    text = re.sub(r"^[ \t]*```.*$", "", text, flags=re.M)  # a fence ends an expected output
    return doctest.DocTestParser().get_doctest(text, {"__name__": "__main__"}, name, name, 0)


PAGES = _pages_with_examples()
if PAGES:  # (none yet: no empty parametrization, which would be a skip)

    @pytest.mark.parametrize("page", PAGES)
    def test_markdown_examples(page, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        test = _markdown_doctest((ROOT / page).read_text(encoding="utf-8"), page)
        failures, tries, report = _run([test])
        assert tries > 0 and failures == 0, report


def test_markdown_examples_are_found_and_can_fail(tmp_path, monkeypatch):
    """A page with an example is picked up, its fences do not leak into an expected output,
    and a wrong output is reported (so the page tests above can fail)."""
    page = "```python\n>>> 1 + 1\n2\n```\n\n```python\n>>> 1 + 1\n3\n```\n"
    failures, tries, report = _run([_markdown_doctest(page, "bad.md")])
    assert (failures, tries) == (1, 2) and "Expected:\n    3\nGot:\n    2" in report
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "python.md").write_text(page)
    (tmp_path / "docs" / "other.md").write_text("no examples here: `x >>> y`\n")
    assert _pages_with_examples() == ["docs/python.md"]
