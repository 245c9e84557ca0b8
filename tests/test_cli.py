"""Every command-line front end answers bad arguments with one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {
    "train.py": [sys.executable, str(ROOT / "train.py")],
    "evaluate.py": [sys.executable, str(ROOT / "evaluate.py")],
    "python -m payroute_env": [sys.executable, "-m", "payroute_env"],
    "python -m agents.open_loop": [sys.executable, "-m", "agents.open_loop"],
}


@pytest.mark.parametrize("name", list(COMMANDS))
@pytest.mark.parametrize("bad", [["--no-such-flag"], ["--scenario"]], ids=["unknown flag", "missing value"])
def test_bad_arguments_give_one_line_and_status_2(name: str, bad: list[str]) -> None:
    proc = subprocess.run(COMMANDS[name] + bad, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and bad[0] in lines[0], proc.stderr
