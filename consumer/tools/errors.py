"""How an operator tool stops: its errors, and the one line that says why.

The runner (``consumer.tools.runner``) turns what a tool raises into that line and an
exit code (2: it could not run).
"""

from __future__ import annotations

import sys


class ToolError(Exception):
    """A problem the operator can fix (a missing topic, another redrive running): one
    line, exit 2."""


class BadArgument(ToolError, ValueError):
    """An argument that does not parse or is out of range."""


def fail(message: str, code: int = 2) -> int:
    """Say why a tool stopped, in one line on stderr; returns its exit code (by default 2:
    it could not run)."""
    print(f"user-events-consumer: {message}", file=sys.stderr)
    return code
