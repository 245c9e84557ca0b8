"""Fuzz every command-line front end: each flag of each command with values a hurried or hostile user types.

    python tests/fuzz_cli.py                  # every command (about half an hour on 2 cores)
    python tests/fuzz_cli.py evaluate rollout # some of them

Each case runs in this process through the command's own runner (``payroute_env._cli.run``), with a small
valid command line around the one flag changed, in a scratch folder. A case is BAD when it ends in a traceback,
in an exit status other than 0 (a valid value) or 2 (refused), or is refused with more than one line. A case
still running after ``--timeout`` seconds counts as accepted. Prints one line per case; exits 1 if any was BAD.
Not part of the suite (pytest collects ``test_*.py`` only): what it found is pinned by tests of its own.

Values are never paths outside the scratch folder: a command may write where a path points.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from payroute_env._cli import run  # noqa: E402  (the repository on the path first, as pytest's pythonpath does)

# command: (module, a small valid command line that each case changes one flag of)
COMMANDS: dict[str, tuple[str, list[str]]] = {
    "evaluate": ("evaluate", ["--scenario", "steady", "--policies", "admit_all", "--episodes", "1", "--no-bound",
                              "--no-plots", "--quiet", "--out", "out"]),
    "train": ("train", ["--scenario", "steady", "--timesteps", "256", "--n-envs", "2", "--hyperparams", "n_steps=64",
                        "batch_size=64", "--no-eval", "--no-progress", "--out", "runs", "--eval-episodes", "1"]),
    "env": ("payroute_env.__main__", ["--scenario", "steady", "--seeds", "0"]),
    "mpc": ("agents.analysis.mpc", ["--scenario", "steady", "--seeds", "0"]),
    "open_loop": ("agents.analysis.open_loop", ["--scenario", "steady", "--iterations", "1", "--population", "2",
                                                "--search-seeds", "1", "--episodes", "1"]),
    "rollout": ("agents.analysis.rollout", ["--base", "admit_all", "--scenario", "steady", "--seeds", "0",
                                            "--futures", "1"]),
    "plain_sb3": ("agents.analysis.plain_sb3", ["--timesteps", "64", "--eval-seeds", "0"]),
    "datasets": ("agents.datasets.__main__", ["--scenario", "steady", "--episodes", "1", "--root", "datasets"]),
    "convert": ("agents.deciders.convert", ["nothing.zip"]),
    "studies": ("agents.studies.__main__", ["nothing.yml", "--out", "studies"]),
}  # fmt: skip
INTS = ["-1", "0", "1" + "0" * 30, "nan", "2.5", ""]
FLOATS = ["-1", "0", "nan", "inf", "-inf", "1e308", "1e-320", ""]
# relative names stay in the scratch folder; "dir" and "file.png" exist there (a folder, a binary file)
STRINGS = ["", " ", "/nonexistent/x", "dir", "file.png", "x" * 300, "nan"]


class Timeout(Exception):
    pass


def parser_of(module: ModuleType) -> argparse.ArgumentParser:
    """The command's parser: its ``_parser()``, or the one ``main`` builds (caught as it parses)."""
    if hasattr(module, "_parser"):
        return module._parser()
    caught: list[argparse.ArgumentParser] = []
    parse = argparse.ArgumentParser.parse_args

    def catch(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> argparse.Namespace:
        caught.append(self)
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = catch  # type: ignore[assignment]
    try:
        module.main([])
    except SystemExit:
        pass
    finally:
        argparse.ArgumentParser.parse_args = parse  # type: ignore[method-assign]
    return caught[0]


def cases(module: ModuleType, base: list[str]) -> Iterator[tuple[str, list[str]]]:
    """``(label, argv)``: each option that takes a value, and each positional, with each bad value."""
    for action in parser_of(module)._actions:
        if action.nargs == 0 or action.dest == "help":
            continue
        values = INTS if action.type is int else FLOATS if action.type is float else STRINGS
        flag = action.option_strings[-1] if action.option_strings else None
        for value in values:
            if flag is None:  # the positional is the base's first word
                yield f"{action.dest}={value[:20]!r}", [value, *base[1:]]
                continue
            argv = list(base)
            if flag in argv:  # drop the flag and its values, then give it the bad one
                start = end = argv.index(flag)
                end += 1
                while end < len(argv) and not argv[end].startswith("--"):
                    end += 1
                del argv[start:end]
            yield f"{flag}={value[:20]!r}", [*argv, flag, value]


def run_case(module: ModuleType, argv: list[str], prog: str, timeout: int) -> tuple[object, str]:
    """The exit status (or ``"TRACEBACK ..."``, ``"TIMEOUT"``) and what the case printed on stderr."""
    err = io.StringIO()
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            run(lambda: module.main(argv), prog)
    except SystemExit as exc:
        status: object = exc.code
    except Timeout:
        status = "TIMEOUT"
    except BaseException as exc:  # noqa: BLE001  (what the fuzz is looking for)
        status = f"TRACEBACK {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    finally:
        signal.alarm(0)
    return status, err.getvalue()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("commands", nargs="*", help=f"commands to fuzz: {', '.join(COMMANDS)} (default: all)")
    p.add_argument("--timeout", type=int, default=60, help="seconds after which a case counts as accepted")
    args = p.parse_args(argv)
    unknown = sorted(set(args.commands) - set(COMMANDS))
    if unknown:
        p.error(f"unknown command {unknown[0]!r}: expected one of {', '.join(COMMANDS)}")

    def on_alarm(*_: object) -> None:
        raise Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="payroute-fuzz-") as scratch:
        os.chdir(scratch)
        (Path(scratch) / "dir").mkdir()
        for name in args.commands or COMMANDS:
            module_name, base = COMMANDS[name]
            module = importlib.import_module(module_name)
            for label, case in cases(module, base):
                Path("file.png").write_bytes(b"\x89PNG\r\n\x1a\n")  # again: a case may have overwritten it
                status, stderr = run_case(module, case, name, args.timeout)
                lines = [line for line in stderr.splitlines() if line.strip()]
                broken = (
                    str(status).startswith("TRACEBACK")
                    or status not in (0, 2, None, "TIMEOUT")
                    or (status == 2 and len(lines) != 1)
                    or "Traceback" in stderr
                )
                bad += broken
                last = lines[-1][:200] if lines else ""
                print(f"{'BAD' if broken else 'ok '} {name} {label}: {status} | {last}", flush=True)
    print(f"{bad} BAD case(s)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
