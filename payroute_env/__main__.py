"""``python -m payroute_env``: roll out the 2013 status quo (admit all, quick) and print its KPIs.

This is the calibration check of the scenarios: the figures in docs/MODEL.md come from it. ``--frame`` also
saves the ``rgb_array`` dashboard of the first seed at a moment of the night (README's picture):

    python -m payroute_env --scenario double11_2013 --seeds 0 1 2
    python -m payroute_env --seeds 0 --frame docs/img/double11_2013_status_quo_0005.png --frame-at-s 300
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import actions, render
from ._cli import OneLineArgumentParser, fail, run
from .scenario import BUILTIN_SCENARIOS, ScenarioError
from .simulator import Simulator


def main(argv: list[str] | None = None) -> int:
    parser = OneLineArgumentParser(prog="python -m payroute_env", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--scenario", default="double11_2013", help=f"{', '.join(BUILTIN_SCENARIOS)} or a TOML path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one episode per seed")
    parser.add_argument("--frame", default=None, metavar="PNG", help="save the first seed's dashboard frame here")
    parser.add_argument("--frame-at-s", type=float, default=300.0, metavar="T",
                        help="the frame's time, seconds after midnight (default 300: 00:05)")  # fmt: skip
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
    first_s, last_s = sim.scenario.start_s + sim.scenario.dt_s, sim.scenario.end_s
    in_night = first_s - sim.scenario.dt_s / 2 <= args.frame_at_s < last_s + sim.scenario.dt_s / 2  # False for NaN
    frame_step = round((args.frame_at_s - sim.scenario.start_s) / sim.scenario.dt_s) if in_night else 0
    if args.frame is not None and not 1 <= frame_step <= sim.params.n_steps:
        night = f"{first_s:g} to {last_s:g} s"
        return fail("python -m payroute_env", f"--frame-at-s {args.frame_at_s:g} is outside the night ({night})")
    timelines = render.FailedRateTimelines(sim.num_envs, sim.params.n_steps)
    for step in range(1, sim.params.n_steps + 1):
        sim.step(action)
        if args.frame is not None and step <= frame_step:  # every step drawn: the frame's timeline is whole
            frame = timelines.frame(sim.params, sim.state, 0)
        if args.frame is not None and step == frame_step:
            try:
                Path(args.frame).write_bytes(render.png(frame, scale=2))
            except OSError as exc:
                return fail("python -m payroute_env", f"cannot write --frame {args.frame}: {exc}")
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
    run(main, "python -m payroute_env")
