"""Compare payroute policies on one scenario: heuristics, trained models and the fluid lower bound.

    python evaluate.py --scenario double11_2013 \\
        --policies admit_all,sre_throttle,success_rate_router,models/ppo.zip --episodes 20 --seed 1000 --out results/
    python evaluate.py --list

Every policy runs the same seeds (common random numbers), batched through the simulation core. Prints a
table (best marked with *) and writes ``results.json``, ``results.csv`` and PNG plots into ``--out``. Bad
input exits with status 2 and a one-line message.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from agents.evaluation.folder import EvaluationError, evaluate_to_folder, print_catalog
from agents.model_files import TRUST_HELP
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="evaluate.py",
        description="Evaluate payroute policies on common seeds and compare them with the fluid lower bound.",
        formatter_class=DefaultsHelpFormatter,  # every option's default in --help
    )
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or path to a TOML file")
    p.add_argument(
        "--policies",
        default="admit_all,static_capacity,sre_throttle,aimd,circuit_breaker,success_rate_router,random",
        help="comma-separated heuristic names, shipped agents (pretrained:NAME, see --list) and/or paths to SB3 model "
        ".zip files or run folders (prefix algo: to force one)",
    )
    p.add_argument("--episodes", type=int, default=20, help="episodes per policy (seeds seed .. seed+episodes-1)")
    p.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    p.add_argument("--out", default="results", help="output folder for results.json, results.csv and plots")
    p.add_argument(
        "--reference",
        default=None,
        help="policy every other is compared with, episode by episode (none given: the best heuristic evaluated)",
    )
    p.add_argument("--no-bound", action="store_true", help="skip the fluid lower bound LP")
    p.add_argument(
        "--bound-layer-s",
        type=float,
        default=60.0,
        help="seconds per LP layer, rounded to whole simulation steps (at least one): smaller gives a tighter bound "
        "and a longer solve (60 s: ~4 s, 10 s: ~4 min, one 5 s step: several minutes)",
    )
    p.add_argument("--no-plots", action="store_true", help="do not write PNG plots")
    p.add_argument("--video", action="store_true", help="write each policy's first episode as video_<policy>.mp4")
    p.add_argument(
        "--report", action="store_true", help="also write report.html: table, figures, scenario, machine, command"
    )
    p.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list built-in scenarios and policies, then exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        print_catalog()
        return 0
    try:
        _, files = evaluate_to_folder(
            args.scenario,
            [s.strip() for s in args.policies.split(",") if s.strip()],
            args.out,
            episodes=args.episodes,
            seed=args.seed,
            bound=not args.no_bound,
            bound_layer_s=args.bound_layer_s,
            reference=args.reference,
            plots=not args.no_plots,
            progress=not args.quiet,
            video=args.video,
            report=args.report,
            trust_models=args.trust_model,
            command=shlex.join(["python", "evaluate.py", *(sys.argv[1:] if argv is None else argv)]),
        )
    except EvaluationError as exc:
        return fail("evaluate.py", exc)
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    run(main, "evaluate.py")
