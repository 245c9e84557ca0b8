"""Where the kernel's time goes: the cost of each phase of ``physics.step_env``, per environment step.

    python benchmarks/kernel_phases.py              # double11_2013, 1024 environments, 150 steps into the night
    python benchmarks/kernel_phases.py --envs 256 --warm-steps 60

Steps a batch under the status quo into the surge (queues, retry backlogs and stressed banks), then runs the
phases cumulatively on copies of that state in one thread: first none, then arrivals and returns, then that
plus throttling, and so on. The difference between two rows is one phase's cost, in nanoseconds per
environment step of one core. The figures are times: they depend on the machine (printed first).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from numba import njit

from payroute_env import actions, core, physics
from payroute_env.sampling import step_counter
from payroute_env.simulator import Simulator

PHASES = ("arrivals_and_returns", "throttle", "route", "channels", "users_after_failure", "servers",
          "what_the_platform_sees", "observe")  # fmt: skip


@njit
def _run_phases(p, traffic, states, upto, reps):
    """Run the first ``upto`` phases for every environment, ``reps`` times (on a copy: the state moves on)."""
    B, K = p.n_banks, p.max_attempts
    P, L, C, S = 2 * B + 1, 4 * B + 1, 2 * B + 2, B + 2
    buf = np.empty(physics.scratch_size(P, L, C, S, K))
    w = physics.scratch_views(buf, P, L, C, S, K)
    for _ in range(reps):
        for i in range(states.shape[0]):
            s = physics.env_state(states[i], p)
            key, ctr = s.key[0], step_counter(s.t[0])
            if upto >= 1:
                physics.arrivals_and_returns(p, traffic, s, w, key, ctr)
            if upto >= 2:
                physics.throttle(p, s, w, key, ctr)
            if upto >= 3:
                physics.route(p, s, w, key, ctr)
            if upto >= 4:
                physics.channels(p, s, w, key, ctr)
            if upto >= 5:
                physics.users_after_failure(p, s, w, key, ctr)
            if upto >= 6:
                physics.servers(p, s, w, key, ctr)
            if upto >= 7:
                physics.what_the_platform_sees(p, s, w)
            if upto >= 8:
                physics.observe(p, s, traffic.shape[1])
    buf[0] = 0.0  # keeps the scratch buffer alive (its views hold no reference)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="double11_2013")
    parser.add_argument("--envs", type=int, default=1024)
    parser.add_argument("--warm-steps", type=int, default=150, help="steps under the status quo before timing")
    parser.add_argument("--reps", type=int, default=3, help="steps per trial")
    parser.add_argument("--trials", type=int, default=5, help="trials per row (the fastest is printed)")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}")
    sim = Simulator(args.scenario, num_envs=args.envs)
    sim.reset(list(range(args.envs)))
    status_quo = np.tile(actions.status_quo("continuous", sim.n_banks), (args.envs, 1))
    for _ in range(args.warm_steps):
        sim.step(status_quo)
    p, traffic = sim.params.kernel, sim.params.traffic
    print(f"{args.scenario}, {args.envs} environments at step {args.warm_steps}, one thread, ns per env step:")
    before = 0.0
    for upto in range(len(PHASES) + 1):
        _run_phases(p, traffic, core._records(sim.state.copy()), upto, 1)  # compile, untimed
        ns = np.inf
        for _ in range(args.trials):  # the fastest of a few trials: the least disturbed by the machine
            records = core._records(sim.state.copy())
            start = time.perf_counter()
            _run_phases(p, traffic, records, upto, args.reps)
            ns = min(ns, (time.perf_counter() - start) / args.reps / args.envs * 1e9)
        name = PHASES[upto - 1] if upto else "(loop, views, scratch)"
        print(f"  {name:<26} {ns - before:8.0f}   cumulative {ns:8.0f}")
        before = ns


if __name__ == "__main__":
    main()
