"""RL Zoo 3 trains on the shipped hyper-parameter files unmodified, and evaluate.py reads what it saves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agents.deciders import PolicyError, SB3Policy, load_policy
from agents.deciders.heuristics import SuccessRateRouter
from agents.deciders.residual import ResidualPolicy
from payroute_env.actions import decode
from payroute_env.sb3_vec_env import make_sb3_vec_env

ROOT = Path(__file__).resolve().parents[1]
HYPERPARAMS = ROOT / "agents" / "hyperparams"
# RL Zoo's name of each shipped file's algorithm (RecurrentPPO is its ppo_lstm)
ZOO_ALGOS = {"ppo": "ppo", "a2c": "a2c", "sac": "sac", "td3": "td3", "dqn": "dqn", "recurrent_ppo": "ppo_lstm"}


def rl_zoo(algo: str, config: Path, folder: Path, env: str = "payroute/Double11-2013-v0", *extra: str) -> Path:
    """Run ``python -m rl_zoo3.train`` for a few hundred steps; return the model it saved."""
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env, "--gym-packages", "payroute_env",
               "-conf", str(config), "-n", "300", "-f", str(folder), "--eval-freq", "-1", "--seed", "0",
               "--device", "cpu", *extra]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (model,) = folder.glob(f"{algo}/*_1/*.zip")
    return model


def test_every_shipped_file_has_an_rl_zoo_algorithm() -> None:
    assert sorted(p.stem for p in HYPERPARAMS.glob("*.yml")) == sorted(ZOO_ALGOS)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO_ALGOS))
def test_rl_zoo_trains_on_the_shipped_file(name: str, tmp_path: Path) -> None:
    model = rl_zoo(ZOO_ALGOS[name], HYPERPARAMS / f"{name}.yml", tmp_path)
    with pytest.raises(PolicyError, match="--trust-model"):  # RL Zoo's files are pickles: trusted only if told
        load_policy(model, "double11_2013")
    policy = load_policy(model, "double11_2013", trust=True)  # RL Zoo's model with its VecNormalize statistics
    assert isinstance(policy, SB3Policy) and policy.obs_rms is not None
    assert policy.vecnormalize_path == model.with_suffix("") / "vecnormalize.pkl"
    obs = make_sb3_vec_env("double11_2013", 2, seed=5, action_mode=policy.action_mode).reset()
    actions, _ = policy.predict(obs, deterministic=True)
    if policy.action_mode == "continuous":
        # a few hundred steps from the status quo (the zero action; sac.yml and td3.yml's StartAtStatusQuo
        # callback ran under RL Zoo for their tanh actors): the policy still admits (nearly) everything
        admit, _ = decode("continuous", actions, 6, np.ones((2, 6)), np.zeros((2, 6, 3)))
        assert admit.min() > 0.85, admit
    else:
        assert policy.action_mode == "discrete"  # dqn.yml's env_kwargs.action_mode


@pytest.mark.slow
def test_rl_zoo_trains_a_residual_policy_that_evaluates_as_one(tiny: str, tmp_path: Path) -> None:
    """The residual hooks: RL Zoo wraps the env in ResidualVecEnv and RecordResidual saves its settings."""
    world = Path(tiny)
    config = tmp_path / "residual.yml"
    config.write_text(f"""default:
  n_envs: 2
  n_timesteps: 300
  policy: MlpPolicy
  env_kwargs: {{scenario: {world}}}
  n_steps: 64
  batch_size: 64
  vec_env_wrapper:
    - agents.training.residual.ResidualVecEnv: {{base: success_rate_router, scale: 0.5}}
  callback:
    - agents.training.callbacks.RecordResidual
""")
    model = rl_zoo("ppo", config, tmp_path / "logs", "payroute/PaymentRouting-v0")
    policy = load_policy(model, world, trust=True)  # RL Zoo saves pickles: trusted, as the run is ours
    assert isinstance(policy, ResidualPolicy) and policy.scale == 0.5
    assert isinstance(policy.base, SuccessRateRouter)


@pytest.mark.slow
def test_rl_zoo_records_a_video_of_what_it_trained(tmp_path: Path) -> None:
    """RL Zoo's own video recorder (``rl_zoo3.record_video``) on a payroute agent it trained. Unlike its train
    command it takes no ``--gym-packages``: payroute is imported first (which registers the ids), then the
    recorder runs as its command line would."""
    rl_zoo("ppo", HYPERPARAMS / "ppo.yml", tmp_path / "logs")
    record = "import runpy, payroute_env; runpy.run_module('rl_zoo3.record_video', run_name='__main__')"
    command = [sys.executable, "-c", record, "--algo", "ppo", "--env", "payroute/Double11-2013-v0",
               "-f", str(tmp_path / "logs"), "-o", str(tmp_path / "videos"), "-n", "20", "--deterministic"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    (video,) = (tmp_path / "videos").rglob("*.mp4")
    assert video.stat().st_size > 1000
