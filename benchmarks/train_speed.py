"""PPO training speed on payroute against CartPole, same settings, measured side by side in one run.

    python benchmarks/train_speed.py                    # 65,536 timesteps each
    python benchmarks/train_speed.py --timesteps 16384   # quicker

Both environments are native batched vector environments behind an SB3 ``VecEnv`` (with ``VecMonitor``):
payroute through ``payroute_env.sb3_vec_env.make_sb3_vec_env`` (``double11_2013``; continuous actions, the default,
and discrete actions, whose policy head is closer to CartPole's), CartPole
through a small adapter over Gymnasium's ``CartPoleVectorEnv`` defined here. PPO settings are identical: 64
environments, ``n_steps`` 64, batch 1024, 4 epochs, MLP 64x64 (policy and value), CPU. Prints training timesteps
per second, the share of the time spent inside the environment, and the ratio payroute / CartPole (target >= 0.8:
the environment is never the bottleneck).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import numpy as np
import torch
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from payroute_env.sb3_vec_env import make_sb3_vec_env

N_ENVS = 64
PPO_SETTINGS: dict[str, Any] = {
    "n_steps": 64,
    "batch_size": 1024,
    "n_epochs": 4,
    "policy_kwargs": {"net_arch": {"pi": [64, 64], "vf": [64, 64]}},
    "device": "cpu",
    "verbose": 0,
}


class CartPoleSB3VecEnv(VecEnv):
    """SB3 ``VecEnv`` over ``CartPoleVectorEnv`` with SB3's same-step reset, no per-environment loop in step.

    Episodes that end are restarted in the same step exactly as ``CartPoleVectorEnv`` would restart them on the
    next one (uniform state in [-0.05, 0.05]); the last observation goes to ``terminal_observation``.
    """

    def __init__(self, num_envs: int) -> None:
        self.venv = CartPoleVectorEnv(num_envs=num_envs)
        self.render_mode = None
        self.num_envs = num_envs
        super().__init__(num_envs, self.venv.single_observation_space, self.venv.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        seed = self._seeds[0]
        obs, _ = self.venv.reset(seed=seed)
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        v = self.venv
        obs, reward, terminated, truncated, _ = v.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if dones.any():
            finished = np.flatnonzero(dones)
            for i in finished:
                infos[i] = {
                    "terminal_observation": obs[i].copy(),
                    "TimeLimit.truncated": bool(truncated[i] and not terminated[i]),
                }
            v.state[:, dones] = v.np_random.uniform(low=v.low, high=v.high, size=(4, len(finished)))
            v.steps[dones] = 0
            v.prev_done[dones] = False
            obs = v.state.T.astype(np.float32)
        return obs, reward.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        if attr_name != "render_mode":
            raise AttributeError(f"CartPoleSB3VecEnv has no attribute {attr_name!r}")
        return [None for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"CartPoleSB3VecEnv cannot set {attr_name!r}")

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list[Any]:
        raise AttributeError(f"CartPoleSB3VecEnv has no environment method {method_name!r}")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]


class StepTimer(VecEnvWrapper):
    """Accumulates the wall time spent in the wrapped environment's ``step`` and ``reset``."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self) -> Any:
        start = time.perf_counter()
        obs = self.venv.reset()
        self.seconds += time.perf_counter() - start
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        start = time.perf_counter()
        self.venv.step_async(actions)
        self.seconds += time.perf_counter() - start

    def step_wait(self) -> VecEnvStepReturn:
        start = time.perf_counter()
        out = self.venv.step_wait()
        self.seconds += time.perf_counter() - start
        return out


def train_steps_per_s(env: VecEnv, timesteps: int, seed: int = 0) -> tuple[float, float]:
    """(training timesteps per second, share of the time spent in the environment) of one PPO run."""
    timer = StepTimer(env)
    model = PPO("MlpPolicy", timer, seed=seed, **PPO_SETTINGS)
    start = time.perf_counter()
    model.learn(total_timesteps=timesteps)
    elapsed = time.perf_counter() - start
    return model.num_timesteps / elapsed, timer.seconds / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=65_536, help="PPO timesteps per environment")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the same for both runs)")
    parser.add_argument(
        "--action-modes", nargs="+", default=["continuous", "discrete"], help="payroute action modes to train"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, ", end="")
    print(f"torch {torch.__version__} ({args.threads} thread(s))")
    print(f"PPO: {N_ENVS} envs, n_steps 64, batch 1024, 4 epochs, MLP 64x64, {args.timesteps:,} timesteps each")
    # warm-up outside the measurement (compilation of the payroute kernel, torch initialisation)
    PPO("MlpPolicy", make_sb3_vec_env("double11_2013", n_envs=N_ENVS, seed=1), **PPO_SETTINGS).learn(4096)
    cartpole, share = train_steps_per_s(VecMonitor(CartPoleSB3VecEnv(N_ENVS)), args.timesteps)
    print(f"  {'CartPole-v1 (Discrete(2))':<36} {cartpole:10,.0f} steps/s   ({share:5.1%} of the time in the env)")
    for mode in args.action_modes:
        env = make_sb3_vec_env("double11_2013", n_envs=N_ENVS, seed=0, action_mode=mode)
        payroute, share = train_steps_per_s(env, args.timesteps)
        ratio = payroute / cartpole
        label = f"payroute Double11-2013 ({mode})"
        print(f"  {label:<36} {payroute:10,.0f} steps/s   ({share:5.1%} of the time in the env)", end="")
        print(f"   ratio to CartPole {ratio:.3f} (target >= 0.8: {'met' if ratio >= 0.8 else 'NOT met'})")


if __name__ == "__main__":
    main()
