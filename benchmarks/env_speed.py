"""Environment speed against CartPole, measured side by side in one run.

    python benchmarks/env_speed.py            # single env (and vector envs, where available)

Single environment: steps per second through ``gymnasium.make`` with random actions (sampled from the
action space inside the loop, as a user would) for ``payroute/Double11-2013-v0`` and ``CartPole-v1``, and
their ratio (target >= 0.25). Absolute figures depend on the machine; the ratio is what to compare.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym

import payroute_env  # noqa: F401  (registers the payroute ids)


def single_env_steps_per_s(env_id: str, seconds: float, seed: int = 0) -> float:
    """Random-action steps per second of one ``gymnasium.make`` env, resetting at episode ends."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            if terminated or truncated:
                env.reset()
        steps += 100
    env.close()
    return steps / elapsed


def single_env_speed(seconds: float) -> None:
    payroute = single_env_steps_per_s("payroute/Double11-2013-v0", seconds)
    cartpole = single_env_steps_per_s("CartPole-v1", seconds)
    print("single environment, gymnasium.make, random actions")
    print(f"  payroute/Double11-2013-v0 {payroute:12,.0f} steps/s")
    print(f"  CartPole-v1               {cartpole:12,.0f} steps/s")
    print(f"  ratio payroute / CartPole {payroute / cartpole:12.3f}   (target >= 0.25)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per environment")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    single_env_speed(args.seconds)


if __name__ == "__main__":
    main()
