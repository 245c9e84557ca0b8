"""``python -m agents.studies``: run a study file on Ray Tune and print its aggregate table.

python -m agents.studies quick                          # embedded local Ray, this machine's cores
python -m agents.studies paper --address auto           # the Ray cluster this machine belongs to
python -m agents.studies quick --resume                 # continue an interrupted study
"""

from __future__ import annotations

from payroute_env._cli import DefaultsHelpFormatter, OneLineArgumentParser, fail, run

from .run import run_study
from .spec import StudyError, load_study


def main(argv: list[str] | None = None) -> int:
    p = OneLineArgumentParser(
        prog="python -m agents.studies",
        description="Run a payroute study (trials of train.py) on Ray Tune; aggregate it with rliable.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("study", help="a study YAML file, or the name of a shipped one (quick, paper)")
    p.add_argument("--out", default="studies", help="folder for studies: each in <out>/<name>/")
    p.add_argument("--address", default=None, help="Ray cluster to run on: auto, host:port or ray://host:10001")
    p.add_argument("--resume", action="store_true", help="continue the study in <out>/<name>/ (finished trials stay)")
    args = p.parse_args(argv)
    try:
        if not args.out.strip():
            raise StudyError("--out is empty; name the folder for studies")
        spec = load_study(args.study)
        _, files = run_study(spec, args.out, address=args.address, resume=args.resume)
    except StudyError as exc:
        return fail("python -m agents.studies", exc)
    print(f"wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    run(main, "python -m agents.studies")
