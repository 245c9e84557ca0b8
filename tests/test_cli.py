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
    "python -m agents.analysis.open_loop": [sys.executable, "-m", "agents.analysis.open_loop"],
    "python -m agents.datasets": [sys.executable, "-m", "agents.datasets"],
}
# train.py's process starts torch (3-5 s a case): its command-line cases are in the slow set, the rest are fast
NAMES = [pytest.param(name, marks=pytest.mark.slow) if name == "train.py" else name for name in COMMANDS]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [["--no-such-flag"], ["--scenario"]], ids=["unknown flag", "missing value"])
def test_bad_arguments_give_one_line_and_status_2(name: str, bad: list[str]) -> None:
    proc = subprocess.run(COMMANDS[name] + bad, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and bad[0] in lines[0], proc.stderr


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_found_after_parsing_gives_one_line_naming_the_command(name: str, tmp_path: Path) -> None:
    # a scenario file whose error message spans lines: the front end must still print exactly one
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[[banks]]\nname = "x"\n\nquick_declared = -1\n', encoding="utf-8")
    proc = subprocess.run(
        COMMANDS[name] + ["--scenario", str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error:"), proc.stderr


@pytest.mark.parametrize(
    ("name", "args"),
    [("python -m payroute_env", ["--scenario", "steady", "--seeds", "0"]), ("evaluate.py", ["--list"])],
)
def test_a_reader_that_goes_away_ends_the_command_quietly(name: str, args: list[str]) -> None:
    """``... | head``: the reader closes the pipe before the output comes; no traceback, a non-zero status
    (141 from ``payroute_env._cli.run``, 1 where rich's console meets the closed pipe first and exits itself)."""
    proc = subprocess.Popen(COMMANDS[name] + args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the command has even imported its modules
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == (141 if name == "python -m payroute_env" else 1), stderr
    assert stderr == ""


def test_a_negative_seed_is_named_as_the_flag_given() -> None:
    proc = subprocess.run(COMMANDS["python -m payroute_env"] + ["--seeds", "0", "-1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip() == "python -m payroute_env: error: --seeds must be integers in [0, 2**64); got -1"


def test_one_line_folds_whitespace_and_cuts_long_messages() -> None:
    from payroute_env._cli import one_line

    assert one_line("a\n  b\tc") == "a b c"
    long = one_line("x " * 500, limit=50)
    assert len(long) == 50 and long.endswith("...")
    assert one_line(AssertionError()) == "AssertionError (no message)"  # never an empty error line


HELP_CASES = [
    ("evaluate.py", ["--episodes", "(default: 20)", "(default: 1000)"]),
    ("python -m agents.datasets", ["(default: success_rate_router)", "(default: 10)", "(default: 0.0)"]),
    pytest.param("train.py", ["(default: ppo)", "(default: 0)", "(default: 1000)"], marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("name", "shown"), HELP_CASES)
def test_help_names_every_default_there_is(name: str, shown: list[str]) -> None:
    proc = subprocess.run(COMMANDS[name] + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    text = " ".join(proc.stdout.split())
    assert proc.returncode == 0 and all(s in text for s in shown), text
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: [])" not in text


def test_the_status_quo_table_names_its_units() -> None:
    proc = subprocess.run(COMMANDS["python -m payroute_env"] + ["--scenario", "steady", "--seeds", "3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    header, columns, row = proc.stdout.splitlines()[1:4]
    assert "failed payments % by bank" in header and "outage min by bank" in header
    assert columns.split()[:3] == ["seed", "failed", "%"] and columns.split().count("ICBC") == 2
    assert len(row.split()) == len(columns.split()) - 1  # "failed %" is two words over one number


def test_the_status_quo_command_saves_a_frame_as_png(tmp_path: Path) -> None:
    """``--frame``: the dashboard of the first seed at ``--frame-at-s``, as a PNG that decodes to that frame."""
    import struct
    import zlib

    import numpy as np

    from payroute_env import render
    from payroute_env.actions import status_quo
    from payroute_env.simulator import Simulator

    path = tmp_path / "frame.png"
    command = COMMANDS["python -m payroute_env"] + ["--scenario", "steady", "--seeds", "4", "--frame", str(path),
                                                    "--frame-at-s", "600"]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    idat_length = struct.unpack(">I", data[33:37])[0]
    rows = np.frombuffer(zlib.decompress(data[41 : 41 + idat_length]), dtype=np.uint8).reshape(height, -1)
    pixels = rows[:, 1:].reshape(height, width, 3)  # each row starts with its filter byte (0: none)
    sim = Simulator("steady", num_envs=1)
    sim.reset(seeds=[4])
    timelines = render.FailedRateTimelines(1, sim.params.n_steps)  # every step drawn, as the command does
    for _ in range(round((600 - sim.scenario.start_s) / sim.scenario.dt_s)):
        sim.step(status_quo("continuous", 6)[None])
        frame = timelines.frame(sim.params, sim.state, 0)
    assert np.array_equal(pixels, np.repeat(np.repeat(frame, 2, axis=0), 2, axis=1))
    for outside in ("1e9", "nan", "inf"):  # NaN and inf once were a traceback (rounded to an integer step)
        late = subprocess.run(command[:-1] + [outside], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert late.returncode == 2 and len(late.stderr.splitlines()) == 1, late.stderr
        assert f"--frame-at-s {float(outside):g} is outside the night (5 to 1800 s)" in late.stderr


FAST_NAMES = [name for name in COMMANDS if name != "train.py"]


@pytest.mark.parametrize("name", FAST_NAMES)
def test_a_path_too_long_for_the_file_system_is_one_line_not_a_traceback(name: str) -> None:
    """Python 3.11's ``Path.exists()`` raises on ENAMETOOLONG: every command's runner turns any file it cannot
    use into one line naming it (found by fuzzing every flag of every command)."""
    too_long = "x" * 300
    flag = {"python -m agents.datasets": "--policy", "evaluate.py": "--policies"}.get(name, "--scenario")
    proc = subprocess.run(COMMANDS[name] + [flag, too_long], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{name}: error: ") and "File name too long" in lines[0], lines
