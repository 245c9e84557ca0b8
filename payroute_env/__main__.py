"""``python -m payroute_env``: roll out the 2013 status quo (admit all, quick) and print its KPIs.

This is the calibration check of the scenarios: the figures in docs/MODEL.md come from it.

    python -m payroute_env --scenario double11_2013 --seeds 0 1 2
"""

from __future__ import annotations

import numpy as np

from . import actions
from ._cli import OneLineArgumentParser, fail, run
from .scenario import BUILTIN_SCENARIOS, ScenarioError
from .simulator import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m payroute_env", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--scenario", default="double11_2013", help=f"{', '.join(BUILTIN_SCENARIOS)} or a TOML path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one episode per seed")
    args = parser.parse_args(argv)
    outside = [seed for seed in args.seeds if not 0 <= seed < 2**64]
    if outside:
        return fail("python -m payroute_env", f"--seeds must be integers in [0, 2**64); got {outside[0]}")
    try:
        sim = Simulator(args.scenario, num_envs=len(args.seeds))
        sim.reset(seeds=args.seeds)
    except (ScenarioError, ValueError) as exc:
        return fail("python -m payroute_env", exc)
    action = np.tile(actions.status_quo("continuous", sim.n_banks), (sim.num_envs, 1))
    for _ in range(sim.params.n_steps):
        sim.step(action)
    banks = sim.scenario.bank_names
    print(f"status quo (admit all, quick-enabled users to quick) on {sim.scenario.name}, {sim.params.n_steps} steps")
    width = 8 * len(banks) - 1
    print(f"{'':>6} {'':>8} {'failed payments % by bank':^{width}}  outage min by bank")
    print(f"{'seed':>6} {'failed %':>8} " + " ".join(f"{b:>7}" for b in banks) + "  " + " ".join(banks))
    for i, seed in enumerate(args.seeds):
        k = sim.kpis(i)
        rates = " ".join(f"{100 * k['failed_payment_rate_by_bank'][b]:7.1f}" for b in banks)
        outages = " ".join(f"{k['outage_seconds'][b] / 60:>{len(b)}.0f}" for b in banks)
        print(f"{seed:>6} {100 * k['failed_payment_rate']:8.2f} {rates}  {outages}")
    return 0


if __name__ == "__main__":
    run(main)
