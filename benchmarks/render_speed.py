"""Frames per second of ``render_mode="rgb_array"`` beside the steps per second of the same env, in one run.

    python benchmarks/render_speed.py

Steps ``payroute/Double11-2013-v0`` under the status quo through ``gymnasium.make`` and times ``step`` alone
and ``step`` followed by ``render`` (what a video recorder does each step): the ratio says how much recording
slows an episode down.
"""

from __future__ import annotations

import os
import platform
import time

import gymnasium as gym

import payroute_env  # noqa: F401  (registers the payroute ids)
from payroute_env.actions import status_quo


def steps_per_s(render: bool, seconds: float = 2.0) -> float:
    env = gym.make("payroute/Double11-2013-v0", render_mode="rgb_array")
    env.reset(seed=0)
    action = status_quo("continuous", env.unwrapped.scenario.n_banks)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        _, _, _, truncated, _ = env.step(action)
        if render:
            env.render()
        if truncated:
            env.reset()
        steps += 1
    return steps / elapsed


def main() -> None:
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    steps_per_s(False, 0.2)  # warm-up: numba's cache is loaded here
    plain, recorded = steps_per_s(False), steps_per_s(True)
    print(f"  step only            {plain:10,.0f} steps/s")
    print(f"  step + rgb frame     {recorded:10,.0f} steps/s  ({recorded / plain:.2f} of step only)")
    print(f"  one frame costs      {1e6 * (1 / recorded - 1 / plain):10,.1f} us")


if __name__ == "__main__":
    main()
