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
import math
import shutil
from pathlib import Path

from payroute_env._cli import OneLineArgumentParser, fail, run


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(
        prog="evaluate.py",
        description="Evaluate payroute policies on common seeds and compare them with the fluid lower bound.",
    )
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or path to a TOML file")
    p.add_argument(
        "--policies",
        default="admit_all,static_capacity,sre_throttle,aimd,circuit_breaker,success_rate_router,random",
        help="comma-separated heuristic names and/or paths to SB3 model .zip files (prefix algo: to force one)",
    )
    p.add_argument("--episodes", type=int, default=20, help="episodes per policy (seeds seed .. seed+episodes-1)")
    p.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    p.add_argument("--out", default="results", help="output folder for results.json, results.csv and plots")
    p.add_argument(
        "--reference",
        default=None,
        help="policy every other is compared with, episode by episode (default: the best heuristic evaluated)",
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list built-in scenarios and policies, then exit")
    return p


def _list() -> None:
    from rich.console import Console
    from rich.table import Table

    from agents.policies import ALGORITHMS, available_policies
    from payroute_env.scenario import BUILTIN_SCENARIOS, load_scenario

    console = Console()
    t = Table(title="scenarios (--scenario NAME, or a path to a TOML file)")
    t.add_column("name")
    t.add_column("description")
    for name in BUILTIN_SCENARIOS:
        t.add_row(name, load_scenario(name).description)
    console.print(t)
    t = Table(title="policies (--policies a,b,c)")
    t.add_column("name")
    t.add_column("description")
    for name, desc in available_policies().items():
        t.add_row(name, desc)
    t.add_row("PATH.zip", f"a trained stable-baselines3 model ({', '.join(ALGORITHMS)}); VecNormalize stats beside it")
    console.print(t)


def _fail(message: object) -> int:
    return fail("evaluate.py", message)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.list:
        _list()
        return 0
    if args.episodes < 1:
        return _fail(f"--episodes must be at least 1; got {args.episodes}")
    if not 0 <= args.seed <= 2**64 - args.episodes:  # seeds are 64-bit: the last episode's must fit too
        n = args.episodes
        return _fail(f"--seed must be in [0, 2**64 - {n}] ({n} episode seeds from it); got {args.seed}")
    if not 0 < args.bound_layer_s < math.inf:
        return _fail(f"--bound-layer-s must be a finite number of seconds > 0; got {args.bound_layer_s:g}")
    specs = [s.strip() for s in args.policies.split(",") if s.strip()]
    if not specs:
        return _fail("--policies is empty")

    from agents.evaluation import evaluate_policies, print_results_table, write_results
    from agents.policies import PolicyError
    from payroute_env.scenario import ScenarioError

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        return _fail(f"--out {out} exists and is not a folder")
    # the outermost folder this command creates, removed again if nothing is written
    new_folder = None if out.exists() else out
    while new_folder is not None and not new_folder.parent.exists():
        new_folder = new_folder.parent
    try:  # find out now, not after a long evaluation, that the results cannot be written
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".payroute_write_test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return _fail(f"cannot write results to {out}: {exc}")
    files: list[Path] = []
    try:
        try:
            result = evaluate_policies(
                args.scenario,
                specs,
                episodes=args.episodes,
                seed=args.seed,
                bound=not args.no_bound,
                bound_layer_s=args.bound_layer_s,
                progress=not args.quiet,
                reference=args.reference,
            )
        except (PolicyError, ScenarioError, ValueError) as exc:
            return _fail(str(exc))
        print_results_table(result)
        try:
            files = write_results(result, out)
            if not args.no_plots:
                from agents.plots import plot_all

                files += plot_all(result, out)
        except OSError as exc:
            return _fail(f"cannot write results to {out}: {exc}")
    finally:
        if new_folder is not None and not files:  # a refused or interrupted command leaves no empty folders
            shutil.rmtree(new_folder, ignore_errors=True)
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    run(main)
