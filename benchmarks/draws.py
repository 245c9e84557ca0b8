"""Random draws per environment step: how many uniforms the dynamics hash, by kind of draw.

    python benchmarks/draws.py                       # double11_2013 under the status quo, one episode
    python benchmarks/draws.py --scenario randomized --steps 300

Runs the kernel's own source as plain Python (``NUMBA_DISABLE_JIT=1``, set here before numba is imported) with
the uniform generator wrapped in a counter, so it counts exactly the draws the compiled kernel makes (draws
that cannot change a result, such as a binomial of nothing or a share of 0 or 1, are never hashed). Prints the
draw slots a step has (``CoreParams.n_draws``), the uniforms hashed per step (mean and range over the
steps, by kind) and how many of them feed a binomial or Poisson sampler (the costly ones; the others spread
a count over attempt numbers or pick an outage length). Counts, not time: the figures do not depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import warnings

os.environ["NUMBA_DISABLE_JIT"] = "1"

import numpy as np  # noqa: E402

from payroute_env import actions, physics, sampling  # noqa: E402
from payroute_env.simulator import Simulator  # noqa: E402


def count_draws(scenario: str, steps: int | None, seed: int = 0) -> tuple[dict[str, np.ndarray], int]:
    """Uniforms hashed per step, by kind of draw (``core._DRAW_ORDER``), under the status quo; and the slots."""
    sim = Simulator(scenario, num_envs=1)
    sim.reset([seed])
    params = sim.params
    offsets = sorted((offset, name) for name, (offset, _) in params.draws.items())
    starts = np.array([o for o, _ in offsets])
    names = [n for _, n in offsets]
    n_steps = params.n_steps if steps is None else min(steps, params.n_steps)
    counts = {name: np.zeros(n_steps, dtype=np.int64) for name in names}
    samples = np.zeros(n_steps, dtype=np.int64)
    step = [0]
    uniform, binomial, poisson = sampling.uniform, sampling.binomial, physics.poisson

    def counting_uniform(key: np.uint64, base: np.uint64, col: int) -> float:
        counts[names[int(np.searchsorted(starts, col, side="right")) - 1]][step[0]] += 1
        return uniform(key, base, col)

    def counting_binomial(n: float, p: float, u: float) -> float:
        samples[step[0]] += 1
        return binomial(n, p, u)

    def counting_poisson(lam: float, u: float) -> float:
        samples[step[0]] += 1
        return poisson(lam, u)

    # the kernel's modules look these functions up by name at every call when the JIT is off
    physics.uniform = sampling.uniform = counting_uniform
    sampling.binomial, physics.poisson = counting_binomial, counting_poisson
    try:
        action = np.tile(actions.status_quo("continuous", sim.n_banks), (1, 1))
        for t in range(n_steps):
            step[0] = t
            sim.step(action)
    finally:
        physics.uniform = sampling.uniform = uniform
        sampling.binomial, physics.poisson = binomial, poisson
    counts["(binomial and Poisson counts sampled)"] = samples
    return counts, params.n_draws


def main() -> None:
    warnings.filterwarnings("ignore", message="overflow encountered")  # uint64 hashing wraps by design
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="double11_2013")
    parser.add_argument("--steps", type=int, default=None, help="steps to count (default: the whole episode)")
    args = parser.parse_args()
    counts, slots = count_draws(args.scenario, args.steps)
    samples = counts.pop("(binomial and Poisson counts sampled)")
    total = sum(counts.values())
    print(f"{args.scenario}, status quo, {len(total)} steps: {slots} draw slots per step")
    print(f"  uniforms hashed per step: mean {total.mean():.1f}, min {total.min()}, max {total.max()}")
    print(f"  binomial and Poisson counts sampled per step: mean {samples.mean():.1f}, max {samples.max()}")
    for name, c in counts.items():
        print(f"    {name:<12} mean {c.mean():7.1f}  max {c.max():4d}")


if __name__ == "__main__":
    main()
