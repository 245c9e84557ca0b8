"""A run folder survives a kill at any moment: train.py killed with SIGKILL at random times (many of them during
checkpoint, statistics and evaluation writes) always resumes, never with fresh normalisation statistics, and
a damaged newest checkpoint is passed over, saying so."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import train
from agents.training.checkpoints import last_checkpoint
from payroute_env.actions import status_quo
from payroute_env.simulator import Simulator

ROOT = Path(__file__).resolve().parents[1]
# a checkpoint and an evaluation every 16 steps (8 of each env), so that writes fill much of the run's time
SETTINGS = ["--n-envs", "2", "--eval-freq", "16", "--no-eval", "--no-progress", "--hyperparams", "n_steps=16",
            "batch_size=32", "n_epochs=1", "eval_episodes=1"]  # fmt: skip


def _command(tiny: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "--scenario", tiny, "--out", str(out), *SETTINGS, *extra]


def _kill_after(command: list[str], seconds: float, first_checkpoint: Path | None = None) -> str:
    """Start ``command``, SIGKILL it ``seconds`` after it starts training; return what it printed.

    With ``first_checkpoint`` (a run's checkpoint folder) the clock starts once a checkpoint is in it: a kill
    before the first checkpoint leaves nothing to resume, and on a loaded machine 0.3 s may not reach one.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    lines = []
    while not (line := proc.stdout.readline()).startswith("training"):
        assert line, proc.communicate()[1]  # it ended before training: its error is the test's failure
        lines.append(line)
    deadline = time.monotonic() + 300
    while first_checkpoint is not None and not list(first_checkpoint.glob("rl_model_*_steps.zip")):
        assert proc.poll() is None and time.monotonic() < deadline, "no first checkpoint"
        time.sleep(0.05)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return "".join(lines)


@pytest.mark.slow
def test_a_run_killed_at_random_moments_always_resumes_with_its_statistics(tiny: str, tmp_path: Path) -> None:
    warm = Simulator(tiny, num_envs=2)  # numba's cache holds the kernel: the runs below spend their time training
    warm.reset([0, 1])
    warm.step(np.tile(status_quo("continuous", warm.n_banks), (2, 1)))
    out, rng = tmp_path / "runs", np.random.default_rng(22)
    run = out / "ppo-tiny-seed0"
    steps_seen = []
    for kill in range(8):
        resume = ["--resume"] if kill else []
        command = _command(tiny, out, "--timesteps", "10000000", *resume)
        printed = _kill_after(command, float(rng.uniform(0.3, 2.0)), None if kill else run / "checkpoints")
        if kill:
            assert "resuming" in printed, printed
        found = last_checkpoint(run, "ppo", normalised=True, trust=False)
        assert found.statistics is not None
        # the statistics saved with the checkpoint counted every observation up to it: never a fresh start
        assert found.statistics["obs_count"] >= found.steps, (found.steps, found.statistics["obs_count"])
        steps_seen.append(found.steps)
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]  # each resume went on from the last
    # the run finishes: a resume to a near target exits 0, and its model loads with its statistics
    target = str(steps_seen[-1] + 64)
    assert train.main(["--scenario", tiny, "--out", str(out), *SETTINGS, "--timesteps", target, "--resume"]) == 0
    assert not [p for p in run.rglob(".*partial*")]  # a resume cleans what a kill left half-written


def test_a_damaged_newest_checkpoint_is_passed_over_saying_so(tiny: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs"
    argv = ["--scenario", tiny, "--out", str(out), *SETTINGS]
    assert train.main([*argv, "--timesteps", "64"]) == 0
    run = out / "ppo-tiny-seed0"
    newest = run / "checkpoints" / "rl_model_64_steps.zip"
    newest.write_bytes(newest.read_bytes()[:1000])  # torn by a disk, not by a kill (that cannot tear it)
    (run / "learning_curve.npz").write_bytes(b"torn")
    (run / "checkpoints" / ".rl_model_80_steps.zip.partial.zip").write_bytes(b"half")  # a kill mid-write left it
    capsys.readouterr()
    assert train.main([*argv, "--timesteps", "96", "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "passed over rl_model_64_steps.zip" in printed and "from rl_model_48_steps.zip (48 steps)" in printed
    assert "learning_curve.npz is unreadable" in printed and "a file a kill left half-written" in printed
    found = last_checkpoint(run, "ppo", normalised=True, trust=False)
    assert found.steps >= 96 and not found.skipped and found.statistics["obs_count"] >= found.steps  # whole rollouts
