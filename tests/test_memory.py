"""Memory limits stated up front: an evaluation or training beyond the machine's memory is refused before it
starts, with one line naming the setting and the estimate; the estimates bound what a run really holds."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import evaluate
import train
from agents.algorithms import algo_class
from agents.evaluation import stats
from agents.training import TrainRequest, resolve_config
from agents.training.memory import training_memory
from payroute_env import load_scenario, memory
from payroute_env.simulator import Simulator

GIB = 2**30


@pytest.fixture
def one_gib_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine with 1 GiB available, whatever this one has."""
    monkeypatch.setattr(memory, "available_bytes", lambda: GIB)


@pytest.mark.parametrize(("name", "internal"), [("double11_2013", False), ("randomized", True)])
def test_the_simulator_estimate_bounds_its_measured_peak(name: str, internal: bool) -> None:
    n = 2000
    actions = np.zeros((n, 4 * load_scenario(name).n_banks), dtype=np.float32)
    tracemalloc.start()
    try:
        sim = Simulator(name, n, observe_internal=internal)
        sim.reset(list(range(n)))
        for _ in range(5):
            sim.step(actions)
        sim.reset(list(range(n)))  # a new batch is built while the old one is alive
        sim.observations()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = memory.simulator_bytes(load_scenario(name), n, internal)
    assert estimate / 2 < peak <= estimate, (peak, estimate)


def test_require_names_the_largest_part_the_estimate_and_the_advice() -> None:
    parts = [("small part", 300 * 2**20), ("big part", 2 * GIB)]
    assert memory.require(parts, "lower it", available=4 * GIB) == 300 * 2**20 + 2 * GIB
    with pytest.raises(memory.MemoryLimitError) as err:
        memory.require(parts, "lower --flag", available=GIB)
    message = str(err.value)
    assert "\n" not in message
    assert "2.29 GiB" in message and "1 GiB" in message and "big part: 2 GiB" in message
    assert message.endswith("lower --flag")
    # small runs never read the machine's memory: a machine that reports none still runs them
    assert memory.require([("tiny", 1000)], "-", available=0) == 1000


def test_a_simulator_beyond_memory_names_num_envs(one_gib_machine: None) -> None:
    with pytest.raises(memory.MemoryLimitError, match=r"num_envs = 200000 environments: .*lower num_envs"):
        Simulator("double11_2013", 200_000)
    Simulator("double11_2013", 1000)  # within it


def test_evaluate_refuses_too_many_episodes_naming_the_flag(one_gib_machine: None, tmp_path: Path, capsys) -> None:
    out = tmp_path / "results"
    assert evaluate.main(["--episodes", "100000", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("evaluate.py: error: this run needs about")
    assert "(records of 100000 episodes x 7 policies: 2.67 GiB)" in err and err.endswith("lower --episodes")
    assert not out.exists()


def test_evaluate_with_a_billion_episodes_exits_2_on_any_machine(tmp_path: Path) -> None:
    """Before the check, three million episodes filled this machine's memory and the kernel killed the run."""
    argv = [sys.executable, "evaluate.py", "--episodes", str(10**9), "--out", str(tmp_path / "r"), "--quiet"]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=Path(evaluate.__file__).parent, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "--episodes" in done.stderr and "TiB" in done.stderr


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["--n-envs", "1500000", "--eval-seed", "1600000"], "rollout buffer of n_steps 512 x --n-envs 1500000"),
        (["--algo", "sac", "--hyperparams", "buffer_size=3000000"], "replay buffer of buffer_size 3000000"),
        (["--hyperparams", "eval_episodes=100000"], "eval_episodes 100000 periodic evaluation environments"),
    ],
)
def test_train_refuses_a_run_beyond_memory_before_making_its_folder(
    argv: list[str], names: str, one_gib_machine: None, tmp_path: Path, capsys
) -> None:
    assert train.main([*argv, "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("train.py: error: this run needs about") and names in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("algo", ["ppo", "recurrent_ppo", "sac", "dqn"])
def test_the_buffer_estimate_is_what_sb3_allocates(algo: str, tmp_path: Path) -> None:
    """The estimate's buffer part against the arrays SB3 really builds for the same settings."""
    from stable_baselines3.common.env_util import make_vec_env

    config = resolve_config(TrainRequest(algo=algo, n_envs=2, out=str(tmp_path)))
    if algo in ("sac", "dqn"):
        config["algo_kwargs"]["buffer_size"] = 5000
    (what, estimate) = training_memory(config)[-1]
    env = make_vec_env("payroute/Double11-2013-v0", n_envs=2, env_kwargs={"action_mode": config["action_mode"]})
    kwargs = {k: v for k, v in config["algo_kwargs"].items() if k in ("n_steps", "buffer_size", "batch_size")}
    if algo == "recurrent_ppo":
        kwargs["policy_kwargs"] = {"lstm_hidden_size": config["policy_kwargs"]["lstm_hidden_size"]}
    model = algo_class(algo)(config["policy"], env, device="cpu", **kwargs)
    buffer = model.rollout_buffer if hasattr(model, "rollout_buffer") else model.replay_buffer
    held = sum(v.nbytes for v in vars(buffer).values() if isinstance(v, np.ndarray))  # LSTM states too
    if hasattr(model, "rollout_buffer"):  # flattened into minibatches: a second copy
        held *= 2
    assert 0.9 * held <= estimate <= 1.5 * held, (what, estimate, held)


def test_bootstrap_intervals_are_the_same_drawn_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resamples are drawn a block at a time (memory stays flat): the intervals do not move by a bit."""
    rng = np.random.default_rng(3)
    x, r = rng.random(57), rng.random(57)
    whole = stats.bootstrap_ci(x), stats.paired_comparison(x, r)
    monkeypatch.setattr(stats, "RESAMPLE_BLOCK", 100)  # one resample of 57 episodes per block
    assert (stats.bootstrap_ci(x), stats.paired_comparison(x, r)) == whole
