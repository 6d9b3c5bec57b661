"""The daemon entry points: the only part of cli/ that hands over to node/ and simnet/.

Imported lazily by ``truc run`` so that admin commands load fast and never
touch the store (which the running daemon holds anyway).
"""

from __future__ import annotations

from pathlib import Path


def run(home: Path) -> int:
    from node.daemon import main

    return main(home)


def demo(*, short: bool, keep: Path | None) -> int:
    from simnet.demo import run_demo

    return run_demo(short=short, keep=keep)
