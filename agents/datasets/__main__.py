"""``python -m agents.datasets``: record a Minari dataset from any policy ``evaluate.py`` accepts.

python -m agents.datasets --scenario double11_2013 --policy success_rate_router --episodes 10
python -m agents.datasets --policy runs/ppo-double11_2013-seed0 --random-share 0.1 --root datasets/
"""

from __future__ import annotations

from agents.model_files import TRUST_HELP
from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run

from .record import DatasetError, record_dataset


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(
        prog="python -m agents.datasets",
        description="Record a Minari dataset of a payroute policy's episodes.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("--scenario", default="double11_2013", help="built-in scenario name or path to a TOML file")
    p.add_argument("--policy", default="success_rate_router", help="heuristic name, model .zip or train.py run folder")
    p.add_argument("--episodes", type=int, default=10, help="episodes (reset seeds seed .. seed+episodes-1)")
    p.add_argument("--seed", type=int, default=0, help="first reset seed; also seeds the random actions")
    p.add_argument("--random-share", type=float, default=0.0, help="probability that a step's action is random")
    p.add_argument("--dataset-id", default=None, help="Minari id (none given: payroute/<scenario>/<policy>-v0)")
    p.add_argument("--root", default=None, help="datasets folder (none given: $MINARI_DATASETS_PATH or ~/.minari)")
    p.add_argument("--trust-model", action="store_true", help=TRUST_HELP)
    args = p.parse_args(argv)
    try:
        dataset = record_dataset(
            args.scenario,
            args.policy,
            episodes=args.episodes,
            seed=args.seed,
            random_share=args.random_share,
            dataset_id=args.dataset_id,
            root=args.root,
            trust_model=args.trust_model,
        )
    except DatasetError as exc:
        return fail("python -m agents.datasets", exc)
    meta = dataset.spec
    print(f"recorded {meta.total_episodes} episodes, {meta.total_steps} steps as {meta.dataset_id} in {meta.data_path}")
    return 0


if __name__ == "__main__":
    run(main, "python -m agents.datasets")
