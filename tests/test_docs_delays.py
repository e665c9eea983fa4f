"""docs/delays.md's Python example runs as written and shows what it says."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "delays.md"


def test_delays_doc_example(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks, "docs/delays.md lost its Python example"
    ns: dict = {}
    exec(compile(blocks[0], "docs/delays.md", "exec"), ns)
    assert tuple(ns["y"].shape) == (8, 112, 64)
    assert tuple(ns["ax"].integer_delays().shape) == (140,)
    assert tuple(ns["den"].integer_delays().shape) == (64,)
    assert ns["sparse_ax"].active_delays() == 140 - 112  # ⌊0.8 · 140⌋ = 112 off
    assert "28" in capsys.readouterr().out
