"""simnet.processes: the environment node processes run in."""

from __future__ import annotations

import pytest

from simnet import processes


def test_node_processes_keep_their_bytecode_as_installed_nodes_do(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sandbox's PYTHONDONTWRITEBYTECODE would make every spawned node compile the project again at its start
    (~0.2 s of CPU each, which the 95-process mesh bench paid 95 times); the rest of the environment is passed on."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("TRUC_PROBE", "kept")
    env = processes._installed_env()
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["TRUC_PROBE"] == "kept"
