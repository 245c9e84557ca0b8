"""What the router's throttle costs when a bank goes down on schedule: the router with and without its memory.

The success-rate router throttles with Google SRE's client-side rule over a 2-minute window of accepts. When a
bank is down, its accepts fall to zero, and after it comes back the rule keeps rejecting payments until the
window has refilled. A correction learned on top of the router (a residual agent) sees the bank's queues, not
the router's window. This plays the router as shipped, with a shorter window and without throttling
(``unthrottled_router``, which admits everything), the plain SRE throttle, and the status quo, on the same seeds:

    python -m agents.analysis.throttle_memory --scenario outage_drill --episodes 20
"""

from __future__ import annotations

import numpy as np

from agents.deciders.heuristics import AdmitAll, HeuristicPolicy, SREThrottle, SuccessRateRouter, UnthrottledRouter
from agents.evaluation.runner import run_policy
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run
from payroute_env.scenario import Scenario, ScenarioError, load_scenario

__all__ = ["main", "throttle_variants", "variant_failures"]

PROG = "python -m agents.analysis.throttle_memory"


def throttle_variants(scenario: Scenario) -> dict[str, HeuristicPolicy]:
    """The router as shipped, its throttle's window shortened to 30 s, the router without throttling, the SRE
    throttle alone, and the status quo."""
    return {
        "success_rate_router": SuccessRateRouter(scenario),
        "success_rate_router, 30 s throttle window": SuccessRateRouter(scenario, window_s=30.0),
        # not a large K: SRE's rule rejects (requests - K accepts) / (requests + 1), which for a bank with no
        # accepts in the window (one that is down) is nearly everything whatever K is
        "unthrottled_router": UnthrottledRouter(scenario),
        "sre_throttle": SREThrottle(scenario),
        "admit_all": AdmitAll(scenario),
    }


def variant_failures(scenario: str, episodes: int = 20, seed: int = 1000) -> dict[str, list[float]]:
    """Each variant's failed-payment rate per episode, on seeds ``seed .. seed + episodes - 1``."""
    if episodes < 1:
        raise ValueError(f"episodes = {episodes}: expected at least 1")
    sc = load_scenario(scenario)
    seeds = list(range(seed, seed + episodes))
    return {
        label: [e["failed_payment_rate"] for e in run_policy(policy, sc, seeds, timeline=False).episodes]
        for label, policy in throttle_variants(sc).items()
    }


def main(argv: list[str] | None = None) -> int:
    about = __doc__.split("\n\n")[0]
    parser = OneLineArgumentParser(prog=PROG, description=about, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--scenario", default="outage_drill", help="built-in scenario name or TOML path")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    args = parser.parse_args(argv)
    try:
        rates = variant_failures(args.scenario, args.episodes, args.seed)
    except (ValueError, ScenarioError) as exc:
        return fail(PROG, exc)
    print(f"{args.scenario}, {args.episodes} episodes from seed {args.seed}")
    print("| policy | failed % |")
    print("|---|---|")
    for label, per_episode in rates.items():
        print(f"| {label} | {100 * np.mean(per_episode):.2f} |")
    return 0


if __name__ == "__main__":
    run(main, PROG)
