"""README's two commands are the contract with a new operator; keep them true."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    block = re.search(r"## Two commands.*?```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README lost its 'Two commands' block"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_readme_has_exactly_two_commands() -> None:
    assert len(readme_commands()) == 2


def test_ci_runs_the_readme_test_command() -> None:
    _main_job, tests = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    test_step = tests.split("&&")[-1].strip()
    assert test_step in ci, f"CI does not run README's test command {test_step!r}"
    install = tests.split("&&")[1].strip()
    assert shlex.split(install)[:3] == [".venv/bin/pip", "install", "-q"] and "-e" in install


def test_main_job_uses_existing_commands() -> None:
    """Each truc step of the main job is a real command (tests/cli/test_demo.py runs the demo itself)."""
    from click.testing import CliRunner

    from cli.main import cli

    main_job, _ = readme_commands()
    steps = [shlex.split(step.strip()) for step in main_job.split("&&")]
    truc_steps = [argv for argv in steps if argv[0] == ".venv/bin/truc"]
    assert truc_steps == [[".venv/bin/truc", "demo"]]
    for argv in truc_steps:
        result = CliRunner().invoke(cli, [*argv[1:], "--help"])
        assert result.exit_code == 0 and "Usage: " in result.output, result.output
