"""Environment speed against CartPole, measured side by side in one run.

    python benchmarks/env_speed.py            # single env, then vector envs
    python benchmarks/env_speed.py --vector-seconds 1 --sizes 1 64 1024 4096

Single environment: steps per second through ``gymnasium.make`` with random actions (sampled from the
action space inside the loop, as a user would) for ``payroute/Double11-2013-v0`` and ``CartPole-v1``, and
their ratio (target >= 0.25). Absolute figures depend on the machine; the ratio is what to compare.

Vector environments (``vector_speed``): env-steps per second (batch steps x N) of ``PaymentRoutingVectorEnv``
(``payroute/Double11-2013-v0``, continuous actions) and Gymnasium's ``CartPoleVectorEnv`` at N = 1, 64, 1024,
4096, both with random actions pre-sampled outside the timed loop and their own next-step autoresets, and the
cost of one payroute environment step in nanoseconds of one core (wall time x cores used / env-steps; the
batch runs on every numba thread from N = ``core.PARALLEL_FROM``). Target at N = 1024: >= 1,000,000
env-steps/s.

Every environment is stepped a few times before its clock starts, so the figures never include numba's
compilation (a fresh checkout compiles the kernel once, then loads it from numba's cache).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import gymnasium as gym
import numba
from gymnasium.envs.classic_control.cartpole import CartPoleVectorEnv
from gymnasium.vector import VectorEnv

import payroute_env  # noqa: F401  (registers the payroute ids)
from payroute_env.core import PARALLEL_FROM
from payroute_env.vector_env import PaymentRoutingVectorEnv


def single_env_steps_per_s(env_id: str, seconds: float, seed: int = 0) -> float:
    """Random-action steps per second of one ``gymnasium.make`` env, resetting at episode ends."""
    env = gym.make(env_id)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for _ in range(10):  # warm-up: compilation or loading from numba's cache happens here, untimed
        env.step(env.action_space.sample())
    env.reset(seed=seed)
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


def vector_env_steps_per_s(venv: VectorEnv, seconds: float, seed: int = 0, n_batches: int = 16) -> float:
    """Env-steps per second (batch steps x num_envs) of a vector env under pre-sampled random action batches."""
    venv.reset(seed=seed)
    venv.action_space.seed(seed)
    batches = [venv.action_space.sample() for _ in range(n_batches)]
    for actions in batches[:2]:  # warm-up (compilation, caches) outside the timed loop
        venv.step(actions)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for actions in batches:
            venv.step(actions)
        steps += len(batches)
    venv.close()
    return steps * venv.num_envs / elapsed


def vector_speed(seconds: float, sizes: tuple[int, ...] = (1, 64, 1024, 4096)) -> dict[int, tuple[float, float]]:
    """Print and return ``{N: (payroute env-steps/s, CartPole env-steps/s)}`` measured in this run."""
    print("vector environments, random actions pre-sampled, env-steps/s = batch steps x N")
    print(f"  {'N':>5} {'PaymentRoutingVectorEnv':>24} {'CartPoleVectorEnv':>18} {'ratio':>8} {'ns/step/core':>13}")
    results = {}
    for n in sizes:
        payroute = vector_env_steps_per_s(PaymentRoutingVectorEnv(n, "double11_2013"), seconds)
        cartpole = vector_env_steps_per_s(CartPoleVectorEnv(num_envs=n), seconds)
        results[n] = (payroute, cartpole)
        cores = numba.get_num_threads() if n >= PARALLEL_FROM else 1
        ns_per_core = 1e9 * cores / payroute
        print(f"  {n:>5} {payroute:>24,.0f} {cartpole:>18,.0f} {payroute / cartpole:>8.3f} {ns_per_core:>13,.0f}")
    if 1024 in results:
        payroute, _ = results[1024]
        print(f"  N=1024 payroute {payroute:,.0f} env-steps/s (target >= 1,000,000): {_verdict(payroute >= 1e6)}")
    return results


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per environment")
    parser.add_argument("--vector-seconds", type=float, default=1.5, help="measuring time per vector env and N")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 4096], help="vector env sizes N")
    parser.add_argument("--skip-single", action="store_true", help="only measure the vector environments")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"numba {numba.__version__} with {numba.get_num_threads()} threads"
    )
    if not args.skip_single:
        single_env_speed(args.seconds)
    vector_speed(args.vector_seconds, tuple(args.sizes))


if __name__ == "__main__":
    main()
