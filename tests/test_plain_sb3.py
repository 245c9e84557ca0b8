"""Plain stable-baselines3, as a new user runs it (no train.py, default settings): the zero action is the status
quo, so a fresh PPO starts from what the platform did in 2013 and learns from there."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import payroute_env  # noqa: F401  (registers the ids)
from agents.analysis.plain_sb3 import failed_rate, main
from payroute_env.actions import status_quo

SEEDS = [1000, 1001, 1002, 1003]


def rate(act) -> float:
    return failed_rate(act, "double11_2013", SEEDS)


def status_quo_rate() -> float:
    return rate(lambda obs: np.tile(status_quo("continuous", 6), (obs.shape[0], 1)))


def test_a_fresh_plain_ppo_acts_as_the_status_quo() -> None:
    model = PPO("MlpPolicy", make_vec_env("payroute/Double11-2013-v0", n_envs=1, seed=0), seed=0, device="cpu")
    fresh = rate(lambda obs: model.predict(obs, deterministic=True)[0])
    assert fresh == pytest.approx(status_quo_rate(), abs=0.002)  # 14.1% both; the old encoding's start failed 59%


@pytest.mark.slow
def test_plain_ppo_learns_to_fail_fewer_payments_than_the_status_quo() -> None:
    """60,000 steps of SB3's defaults (one environment, 2,048-step rollouts): 12.9% against 14.1% on 20 seeds
    (docs/RESULTS.md, "Plain SB3"); at 20,000 steps it is still within noise of the status quo."""
    model = PPO("MlpPolicy", make_vec_env("payroute/Double11-2013-v0", n_envs=1, seed=0), seed=0, device="cpu")
    model.learn(60_000)
    learned = rate(lambda obs: model.predict(obs, deterministic=True)[0])
    assert learned < status_quo_rate() - 0.005


def test_the_command_line_refuses_an_unknown_env_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--env", "CartPole-v1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expected a built-in payroute id" in err[0]
    for bad in (["--seed", str(2**32)], ["--eval-seeds", "0", str(2**64)]):  # tracebacks from SB3 and reset once
        assert main(bad) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--seed in [0, 2**32) (SB3's seeds), --eval-seeds in [0, 2**64)" in err[0], err
