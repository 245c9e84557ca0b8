"""Ship a train.py run as a pretrained agent: ``agents/pretrained/<name>/`` with its model and its card.

    python -m agents.training.ship /tmp/runs/ppo-double11_2013-seed0 --name default_2013 \\
        --description "PPO trained by python train.py on double11_2013" --command "python train.py"

The run's ``model.zip`` is copied (it must load without ``--trust-model`` and weigh under 1 MB with its
statistics), then evaluated on every world named by ``--worlds`` beside every built-in heuristic and the fluid
bound, with evaluate.py's protocol (``--episodes`` from seed 1000, ``--randomized-episodes`` on randomised
worlds). The card (``card.json`` and ``card.md``) records the run's settings, the command, the machine, the commit
and per world: the agent's failed-payment rate, the best heuristic's, the bound, the paired comparison with that
heuristic and the share of its gap to the bound the agent closes. Its ``check`` holds the first two seeds of the
first world run as their own batch of two, exactly as ``tests/test_pretrained.py`` reproduces them (a network's
float32 batched products round differently with the batch size, and a trajectory that differs by one intent can
drift, so the check is not taken from the 20-episode batch). Loading: ``agents.deciders.pretrained``.

When the comparison changes (a new heuristic, a new simulator version), a shipped agent is measured again in
place, keeping its description, command and training record; its training run need not exist any more:

    python -m agents.training.ship --remeasure generalist
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.deciders import HEURISTICS, PolicyError, load_policy
from agents.deciders.pretrained import PRETRAINED_DIR
from agents.evaluation.runner import PolicyResult, evaluate_policies, machine_description, run_policy
from agents.evaluation.stats import gap_closed
from payroute_env import BUILTIN_SCENARIOS
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run
from payroute_env.scenario import load_scenario

__all__ = ["MAX_MODEL_BYTES", "card_markdown", "measure_check", "remeasure_agent", "ship_agent"]

PROG = "python -m agents.training.ship"
MAX_MODEL_BYTES = 2**20  # "each under 1 MB with its normalisation statistics": strangers download these
COMPARED = [name for name in HEURISTICS if name != "random"]  # the hand-written policies an agent must beat


def ship_agent(
    run_dir: str | Path,
    name: str,
    description: str,
    command: str,
    worlds: Sequence[str] = BUILTIN_SCENARIOS,
    episodes: int = 20,
    randomized_episodes: int = 100,
    seed: int = 1000,
    folder: Path = PRETRAINED_DIR,
    progress: bool = True,
) -> dict[str, Any]:
    """Copy ``run_dir``'s final model into ``folder/name``, evaluate it on ``worlds`` and write its card; return it."""
    run_dir = Path(run_dir)
    model, config_path = run_dir / "model.zip", run_dir / "config.json"
    if not model.is_file() or not config_path.is_file():
        raise ValueError(f"{run_dir} is not a finished train.py run (it needs model.zip and config.json)")
    if not name.replace("_", "").replace("-", "").isalnum() or not name[0].isalpha():
        raise ValueError(f"--name {name!r}: use letters, digits, '_' and '-', starting with a letter")
    size = model.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise ValueError(f"{model} is {size / 2**20:.2f} MB; a shipped agent must be under 1 MB (a smaller network)")
    if not worlds:
        raise ValueError("--worlds: name at least one world")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    load_policy(model, worlds[0])  # refused here (pickles, spaces) before anything is written or evaluated
    card = {
        "name": name,
        "description": description,
        "command": command,
        "algorithm": config["algo"],
        "training": {key: config.get(key) for key in ("scenario", "timesteps", "n_envs", "seed", "policy_kwargs",
                                                      "algo_kwargs", "normalize", "residual", "residual_scale",
                                                      "init_model")},  # a curriculum's last stage names its start
        **_measurement(model, worlds, episodes, randomized_episodes, seed, progress),
    }  # fmt: skip
    out = Path(folder) / name
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, out / "model.zip")
    _write_card(card, out)
    return card


def remeasure_agent(
    name: str,
    worlds: Sequence[str] | None = None,
    episodes: int = 20,
    randomized_episodes: int = 100,
    seed: int = 1000,
    folder: Path = PRETRAINED_DIR,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure the shipped agent ``folder/name`` again (on its card's worlds unless ``worlds`` is given) and rewrite
    its card's results, check, machine, commit and date; what it is and how it was trained are kept."""
    out = Path(folder) / name
    model, card_path = out / "model.zip", out / "card.json"
    if not model.is_file() or not card_path.is_file():
        shipped = sorted(p.name for p in Path(folder).iterdir() if (p / "card.json").is_file()) if Path(
            folder).is_dir() else []  # fmt: skip
        raise ValueError(f"--remeasure {name!r}: no shipped agent of that name in {folder}; shipped: "
                         f"{', '.join(shipped) or 'none'}")  # fmt: skip
    card = json.loads(card_path.read_text(encoding="utf-8"))
    worlds = [r["world"] for r in card["results"]] if worlds is None else list(worlds)
    if not worlds:
        raise ValueError("--worlds: name at least one world")
    card.update(_measurement(model, worlds, episodes, randomized_episodes, seed, progress))
    _write_card(card, out)
    return card


def _measurement(model: Path, worlds: Sequence[str], episodes: int, randomized_episodes: int, seed: int,
                 progress: bool) -> dict[str, Any]:  # fmt: skip
    """A card's measured part: per world beside every compared heuristic and the bound, the check, where and when."""
    results = []
    for world in worlds:
        sc = load_scenario(world)  # checked once here; evaluate_policies trusts the Scenario
        n = randomized_episodes if sc.randomize.active else episodes
        # the model's path, not a policy loaded once: a correction's base heuristic reads each world's declared
        # capacities, so the agent is loaded for each world
        evaluated = evaluate_policies(sc, [model, *COMPARED], episodes=n, seed=seed, progress=progress,
                                      timeline=False)  # fmt: skip
        results.append(_world_row(world, evaluated.policies, evaluated.bound, evaluated.reference))
    return {
        "results": results,
        "check": measure_check(model, worlds[0], [seed, seed + 1]),
        "machine": machine_description(),
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d"),
    }


def _write_card(card: dict[str, Any], out: Path) -> None:
    (out / "card.json").write_text(json.dumps(card, indent=1) + "\n", encoding="utf-8")
    (out / "card.md").write_text(card_markdown(card), encoding="utf-8")


def measure_check(model: str | Path, world: str, seeds: list[int]) -> dict[str, Any]:
    """The card's check: ``model`` on ``world`` for ``seeds``, batched as ``tests/test_pretrained.py`` runs them."""
    policy = load_policy(model, world)
    episodes = run_policy(policy, world, seeds, timeline=False).episodes
    return {"world": world, "seeds": list(seeds), "failed_payment_rate": [e["failed_payment_rate"] for e in episodes]}


def _world_row(world: str, policies: list[PolicyResult], bound: dict[str, Any] | None, best: str | None) -> dict:
    agent, heuristic = policies[0], next(p for p in policies if p.name == best)
    bound_rate = bound["failed_payment_rate"] if bound is not None else None
    versus = agent.summary["vs_reference"]
    rate = agent.summary["failed_payment_rate"]
    return {
        "world": world,
        "episodes": len(agent.episodes),
        "first_seed": agent.episodes[0]["seed"],
        "failed_payment_rate": rate,
        "failed_payment_rate_ci": agent.summary["failed_payment_rate_ci"],
        "best_heuristic": best,
        "best_heuristic_failed_payment_rate": heuristic.summary["failed_payment_rate"],
        "fluid_bound": bound_rate,
        "vs_best_heuristic": versus["relative"],
        "vs_best_heuristic_ci": versus["relative_ci"],
        "better_episodes": versus["better_episodes"],
        "gap_closed": None if bound_rate is None else gap_closed(rate, heuristic.summary["failed_payment_rate"],
                                                                 bound_rate),
    }  # fmt: skip


def card_markdown(card: dict[str, Any]) -> str:
    """The card for people: what the agent is, how it was made, and its results table."""
    t = card["training"]
    lines = [
        f"# pretrained:{card['name']}",
        "",
        card["description"],
        "",
        f"- Load: `python evaluate.py --policies success_rate_router,pretrained:{card['name']}` or "
        f"`agents.deciders.load_policy(\"pretrained:{card['name']}\", scenario)`.",
        f"- Trained with: `{card['command']}` ({card['algorithm']}, {t['timesteps']:,} steps, {t['n_envs']} "
        f"environments, training seed {t['seed']}, on `{t['scenario']}`"
        + (f", starting from `{t['init_model']}`" if t.get("init_model") else "") + ").",
        f"- Measured on: {card['machine']}, commit {card['commit']}, {card['date']}.",
        f"- Check (tests/test_pretrained.py): on `{card['check']['world']}` seeds {card['check']['seeds']}, failed "
        + " and ".join(f"{100 * r:.4f}%" for r in card["check"]["failed_payment_rate"]) + ".",
        "",
        "| world | episodes | failed % | 95% CI | best heuristic | its failed % | fluid bound % | vs it % (paired) "
        "| better in | gap to bound closed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in card["results"]:
        lo, hi = r["vs_best_heuristic_ci"]
        bound = "" if r["fluid_bound"] is None else f"{100 * r['fluid_bound']:.2f}"
        closed = "" if r["gap_closed"] is None else f"{100 * r['gap_closed']:.0f}%"
        lines.append(
            f"| {r['world']} | {r['episodes']} (seeds {r['first_seed']}-{r['first_seed'] + r['episodes'] - 1}) "
            f"| {100 * r['failed_payment_rate']:.2f} | [{100 * r['failed_payment_rate_ci'][0]:.2f}, "
            f"{100 * r['failed_payment_rate_ci'][1]:.2f}] | {r['best_heuristic']} "
            f"| {100 * r['best_heuristic_failed_payment_rate']:.2f} | {bound} | {100 * r['vs_best_heuristic']:+.1f} "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] | {r['better_episodes']}/{r['episodes']} | {closed} |"
        )
    lines += ["", "Written by `python -m agents.training.ship` (see its docstring); the figures are its own.", ""]
    return "\n".join(lines)


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=10)  # fmt: skip
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def _parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog=PROG, description="Ship a train.py run as a pretrained agent with its card.",
                              formatter_class=DefaultsHelpFormatter)  # fmt: skip
    p.add_argument("run_dir", nargs="?", help="a finished train.py run folder (model.zip, config.json)")
    p.add_argument("--name", help="the agent's name: pretrained:<name> (with run_dir)")
    p.add_argument("--description", help="one line on what the agent is (with run_dir)")
    p.add_argument("--command", help="the command that trained it, as the card shows it (with run_dir)")
    p.add_argument("--remeasure", metavar="NAME", help="measure the shipped agent NAME again instead (no run_dir)")
    p.add_argument("--worlds", help="comma-separated worlds to measure it on (default: every built-in world; "
                   "with --remeasure, its card's)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per fixed world")
    p.add_argument("--randomized-episodes", type=int, default=100, help="episodes per randomised world")
    p.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    p.add_argument("--folder", type=Path, default=PRETRAINED_DIR, help="where the agents' folders are")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    worlds = None if args.worlds is None else [w.strip() for w in args.worlds.split(",") if w.strip()]
    shipping = {"run_dir": args.run_dir, "--name": args.name, "--description": args.description,
                "--command": args.command}  # fmt: skip
    if args.remeasure is not None and any(v is not None for v in shipping.values()):
        parser.error("--remeasure NAME measures a shipped agent: give it without run_dir, --name, --description "
                     "and --command")  # fmt: skip
    if args.remeasure is None and None in shipping.values():
        missing = [k for k, v in shipping.items() if v is None]
        parser.error(f"shipping a run needs run_dir, --name, --description and --command (missing: "
                     f"{', '.join(missing)}); or --remeasure NAME")  # fmt: skip
    try:
        if args.remeasure is not None:
            card = remeasure_agent(args.remeasure, worlds, args.episodes, args.randomized_episodes, args.seed,
                                   args.folder)  # fmt: skip
        else:
            card = ship_agent(args.run_dir, args.name, args.description, args.command,
                              BUILTIN_SCENARIOS if worlds is None else worlds, args.episodes,
                              args.randomized_episodes, args.seed, args.folder)  # fmt: skip
    except (PolicyError, ValueError) as exc:
        return fail(PROG, exc)
    print(card_markdown(card))
    return 0


if __name__ == "__main__":
    run(main, PROG)
