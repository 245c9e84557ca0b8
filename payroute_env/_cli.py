"""What every payroute front end shares: bad input gives one line on stderr and exit status 2.

``OneLineArgumentParser`` for bad arguments, ``fail`` for bad input found later (a missing file, a scenario
that does not validate), ``one_line`` to fold a library's multi-line message into that line; ``run`` calls a
front end's ``main`` so that a closed pipe (``... | head``) ends it quietly and a file it cannot use in one line.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

EXIT_BAD_INPUT = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a program killed by a closed pipe


def one_line(message: object, limit: int = 300) -> str:
    """``message`` as one line: whitespace (newlines too) folded to single spaces, cut to ``limit`` characters.

    An exception without a message (a bare ``AssertionError``) is named by its type, so the line is never empty.
    """
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = f"{type(message).__name__} (no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fail(prog: str, message: object) -> int:
    """Print ``<prog>: error: <message>`` as one line on stderr; return the bad-input exit status."""
    print(f"{prog}: error: {one_line(message, limit=1000)}", file=sys.stderr)
    return EXIT_BAD_INPUT


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` names each option's default, except where there is none to name (a flag, or ``None``)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if default is None or default is False or default == [] or default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action) or ""


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr (argparse also prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def run(main: Callable[[], int], prog: str) -> NoReturn:
    """Exit with ``main()``'s status; if the reader of stdout went away (``| head``), exit 141 without a traceback.

    A file the command cannot read or write (a name too long for the file system, a folder without permission,
    a full disk) ends it with one line naming the file, whichever path led there.
    """
    try:
        status = main()
        sys.stdout.flush()  # surface a closed pipe here, not at interpreter shutdown
    except BrokenPipeError:
        # Python's own advice: point stdout at devnull so the flush at shutdown cannot raise again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        status = EXIT_BROKEN_PIPE
    except OSError as exc:  # after BrokenPipeError, which is one
        name = exc.filename if exc.filename is not None else "a file"
        status = fail(prog, f"cannot use {one_line(name, limit=120)}: {exc.strerror or one_line(exc)}")
    raise SystemExit(status)
