"""Errors a user can act on. The CLI prints them without a traceback."""

from __future__ import annotations


class MMCTRError(Exception):
    """Base class: the message says what was wrong, where, and what to do."""


class DataError(MMCTRError):
    """A data file is missing, malformed, or inconsistent with another."""

    def __init__(self, path: object, field: str | None, problem: str):
        self.path = str(path)
        self.field = field
        where = f"{self.path}" + (f", column {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")


class ConfigError(MMCTRError):
    """A configuration file or option is invalid."""


class SubmissionError(MMCTRError):
    """A prediction file does not meet the challenge's submission format."""


def warn(message: str) -> None:
    """A warning a user should read (printed to stderr, not raised)."""
    import sys

    print(f"mmctr: warning: {message}", file=sys.stderr, flush=True)


def script_exit(run) -> None:
    """Run a script's `main` as `mmctr` runs a command, then exit: an MMCTRError (a wrong data root,
    a malformed file) is one line on stderr and exit status 2, not a traceback."""
    import sys
    from pathlib import Path

    try:
        code = run()
    except MMCTRError as err:
        print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(int(code or 0))
