"""Errors a user causes and can fix (bad input, a refused config, a run directory in use, a diverged run).

Entry points report one as a single `error: ...` message and exit code 2; the traceback is shown only with
`--debug` or `DIST_CLUSTER_DEBUG=1`. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import os
import sys

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Base of every error whose message tells the user what to fix."""


class DataError(UserError, ValueError):
    """Unreadable, empty or invalid data: the message names the file (and sample)."""


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """(whether tracebacks are wanted, argv without --debug)."""
    rest = [a for a in argv if a != "--debug"]
    return len(rest) != len(argv) or os.environ.get("DIST_CLUSTER_DEBUG", "") not in ("", "0"), rest


def exit_with(e: BaseException, debug: bool = False):
    """Print `error: <message>` on stderr and exit 2 (re-raise instead when debugging)."""
    if debug:
        raise e
    print(f"error: {e}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USER_ERROR)
