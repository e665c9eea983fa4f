"""Run training commands a few at a time (shared by ``tune.py`` and ``ablation.py``).

Why: on a 2-core machine two one-thread runs side by side finish sooner than one two-thread
run after another; both scripts run their lists of ``spikedelay train`` commands this way.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


def run_commands(commands: list[tuple[list[str], Path | None]], jobs: int, cwd: Path) -> int:
    """Run each ``(command, log file or None)`` with at most ``jobs`` at once, printing each
    command as it starts; return how many exited with an error (those are named)."""
    running: list[tuple[subprocess.Popen, list[str]]] = []
    failed: list[list[str]] = []

    def reap(block: bool) -> None:
        nonlocal running
        if block:
            running[0][0].wait()
        for proc, cmd in running:
            if proc.poll() not in (None, 0):
                failed.append(cmd)
        running = [(p, c) for p, c in running if p.poll() is None]

    for cmd, log in commands:
        print(shlex.join(cmd), flush=True)
        out = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("w")
        running.append((subprocess.Popen(cmd, cwd=cwd, stdout=out,
                                         stderr=subprocess.STDOUT if out else None), cmd))
        while len(running) >= jobs:
            reap(block=True)
    while running:
        reap(block=True)
    for cmd in failed:
        print(f"FAILED: {shlex.join(cmd)}", flush=True)
    return len(failed)
