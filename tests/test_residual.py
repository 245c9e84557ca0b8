"""Residual policies (agents.deciders.residual): a learned correction to a heuristic, in training and evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import train
from agents.algorithms import algo_class
from agents.deciders import Policy, PolicyError, load_policy
from agents.deciders.heuristics import SuccessRateRouter
from agents.deciders.residual import MODEL_ATTRIBUTE, ResidualPolicy, combine
from agents.evaluation import run_policy
from agents.training.hyperparams import RECORD_RESIDUAL_CALLBACK as RECORD
from agents.training.hyperparams import RESIDUAL_WRAPPER as WRAPPER
from agents.training.residual import ResidualVecEnv
from payroute_env.actions import decode
from payroute_env.sb3_vec_env import make_sb3_vec_env

FAST = ["--no-eval", "--no-progress"]
SMALL_PPO = ["n_steps=32", "batch_size=64", "n_epochs=1"]


class Constant(Policy):
    """A stand-in correction that always answers ``value``."""

    def __init__(self, value: float) -> None:
        self.value, self.name = value, f"constant {value}"

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None, deterministic=True):
        return np.full((observation.shape[0], 24), self.value, dtype=np.float32), state


def test_combine_adds_the_scaled_correction_and_clips() -> None:
    base = np.array([[0.0, -0.05, 0.05, 0.0], [-0.9, 0.0, 0.0, 0.9]])  # admit all, 95/5 quick/switch; ...
    out = combine(base, np.array([[-0.25, 2.0, -0.5, 0.5], [-1.0, 0.5, 0.5, 0.5]]), scale=0.5)
    assert out.dtype == np.float32
    # 2.0 is clipped to 1 before scaling; sums are clipped to the action box [-1, 1]
    assert np.allclose(out, [[-0.125, 0.45, -0.2, 0.25], [-1.0, 0.25, 0.25, 1.0]])
    with pytest.raises(ValueError, match="does not fit"):
        combine(base, np.zeros((1, 3)), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        combine(base[:1], np.array([[np.nan, 0, 0, 0]]), 1.0)


def test_zero_correction_is_exactly_the_heuristic(tiny: str) -> None:
    seeds = [5, 6]
    alone = run_policy(SuccessRateRouter(tiny), tiny, seeds, timeline=False).episodes
    paired = run_policy(ResidualPolicy(Constant(0.0), SuccessRateRouter(tiny), 1.0), tiny, seeds, timeline=False)
    assert [e["lost"] for e in paired.episodes] == [e["lost"] for e in alone]
    assert [e["succeeded"] for e in paired.episodes] == [e["succeeded"] for e in alone]
    # the training wrapper drives the heuristic the same way (memory reset when an episode ends)
    venv = ResidualVecEnv(make_sb3_vec_env(tiny, 2, seed=5), SuccessRateRouter(tiny), scale=1.0)
    assert venv.action_space.low.min() == -1 and venv.action_space.high.max() == 1
    venv.reset()
    rates: list[float] = []
    while len(rates) < 2:
        _, _, dones, infos = venv.step(np.zeros((2, 24), dtype=np.float32))
        rates += [infos[i]["episode_kpis"]["failed_payment_rate"] for i in np.flatnonzero(dones)]
    assert rates == [e["failed_payment_rate"] for e in alone]


def test_a_full_correction_overrides_the_heuristic(tiny: str) -> None:
    policy = ResidualPolicy(Constant(1.0), SuccessRateRouter(tiny), 1.0)
    obs = np.zeros((3, 172), dtype=np.float32)
    action, _ = policy.predict(obs)
    admit, _ = decode("continuous", action, 6, np.ones((3, 6)), np.zeros((3, 6, 3)))
    assert (admit == 1).all() and (action[:, 2::4] == 1).all()  # admit all, the switch at its largest weight
    down, _ = ResidualPolicy(Constant(-1.0), SuccessRateRouter(tiny), 1.0).predict(obs)
    admit, _ = decode("continuous", down, 6, np.ones((3, 6)), np.zeros((3, 6, 3)))
    assert (admit == 0).all()  # throttle everything


def test_residual_wrapper_needs_continuous_actions(tiny: str) -> None:
    with pytest.raises(ValueError, match="continuous action mode"):
        ResidualVecEnv(make_sb3_vec_env(tiny, 1, action_mode="discrete"), SuccessRateRouter(tiny))


def test_train_saves_a_residual_model_that_loads_with_its_heuristic(tiny: str, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    argv = ["--scenario", tiny, "--timesteps", "128", "--n-envs", "2", "--out", str(out)]
    hp = ["--residual", "success_rate_router", "--residual-scale", "0.5", "--hyperparams", *SMALL_PPO]
    assert train.main(argv + hp + FAST) == 0
    run = out / "ppo-tiny-seed0"
    config = json.loads((run / "config.json").read_text())
    assert config["residual"] == "success_rate_router" and config["residual_scale"] == 0.5
    assert config["start_at_status_quo"] is False  # the YAML's status-quo start does not apply
    model = algo_class("ppo").load(run / "model.zip", device="cpu")
    assert getattr(model, MODEL_ATTRIBUTE) == {"base": "success_rate_router", "scale": 0.5}
    policy = load_policy(run / "model.zip", tiny)
    assert isinstance(policy, ResidualPolicy) and policy.scale == 0.5
    assert "correction (x0.5) to success_rate_router" in policy.describe()
    # its action is the router's plus half the model's correction
    obs = make_sb3_vec_env(tiny, 2, seed=9).reset()
    got, _ = policy.predict(obs)
    router, _ = SuccessRateRouter(tiny).predict(obs)
    correction, _ = model.predict(policy.correction.normalize(obs), deterministic=True)
    assert np.array_equal(got, combine(router, correction, 0.5))
    # resuming keeps the residual: the run's config.json and the checkpoint both say so, even when the
    # resuming command does not repeat the hyper-parameters
    longer = argv[:3] + ["256"] + argv[4:]
    assert train.main(longer + FAST + ["--resume"]) == 0
    resumed = load_policy(run / "model.zip", tiny)
    assert isinstance(resumed, ResidualPolicy) and resumed.scale == 0.5
    assert algo_class("ppo").load(run / "model.zip").num_timesteps == 256
    # repeating the run's own command is fine
    assert train.main(longer[:3] + ["320"] + longer[4:] + hp + FAST + ["--resume"]) == 0
    assert algo_class("ppo").load(run / "model.zip").num_timesteps == 320


def test_bad_residual_settings_in_a_model_are_named(tiny: str, tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    from agents.model_files import save_model
    from payroute_env import PaymentRoutingEnv

    model = PPO("MlpPolicy", PaymentRoutingEnv(tiny), n_steps=32, batch_size=32, device="cpu")
    setattr(model, MODEL_ATTRIBUTE, {"base": "no_such_heuristic", "scale": 1.0})
    save_model(model, tmp_path / "bad.zip")
    with pytest.raises(PolicyError, match="bad residual settings.*no_such_heuristic"):
        load_policy(tmp_path / "bad.zip", tiny)


@pytest.mark.parametrize(
    ("hyperparams", "message"),
    [
        (["--residual", "nope"], "residual = 'nope': expected a heuristic name"),
        (["--residual", "aimd", "--residual-scale", "2"], "residual_scale = 2.0: expected a number in (0, 1]"),
        (["--residual-scale", "0.5"], "--residual-scale 0.5 needs --residual"),
        (["--hyperparams", "residual=aimd"], "residual is no longer a setting of its own; it is now --residual"),
        (
            ["--hyperparams", f"vec_env_wrapper={{{WRAPPER}: {{base: [aimd]}}}}", f"callback={RECORD}"],
            "residual = ['aimd']: expected a heuristic name",
        ),  # fmt: skip
        (["--hyperparams", f"vec_env_wrapper={{{WRAPPER}: {{base: aimd}}}}"], "go together"),
        (["--hyperparams", f"vec_env_wrapper={{{WRAPPER}: {{bass: aimd}}}}"], "takes base (a heuristic) and scale"),
        (["--hyperparams", "vec_env_wrapper=my.Wrapper"], "train.py applies agents.training.residual.ResidualVecEnv"),
    ],
)
def test_bad_residual_settings_exit_2(hyperparams: list[str], message: str, tmp_path: Path, capsys) -> None:
    assert train.main(["--out", str(tmp_path), *hyperparams] + FAST) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_residual_needs_the_continuous_action_mode(tmp_path: Path, capsys) -> None:
    argv = ["--algo", "dqn", "--out", str(tmp_path), "--residual", "aimd"]
    assert train.main(argv + FAST) == 2
    assert "needs the continuous action mode" in capsys.readouterr().err
