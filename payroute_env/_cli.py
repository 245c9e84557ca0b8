"""What every payroute front end shares: bad input gives one line on stderr and exit status 2.

``OneLineArgumentParser`` for bad arguments, ``fail`` for bad input found later (a missing file, a scenario
that does not validate), ``one_line`` to fold a library's multi-line message into that line.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

EXIT_BAD_INPUT = 2


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


class OneLineArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line on stderr (argparse also prints the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")
