"""What an interpreter's configure flags say of its optimization: the bench reports it
beside each figure, and ``compare`` refuses two sides whose interpreters differ in it."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

# Printed by a side's interpreter: its own configure flags.
_PRINT_CONFIG_ARGS = "import sysconfig; print(sysconfig.get_config_var('CONFIG_ARGS') or '')"


def python_build(config_args: str | None) -> str:
    """What the configure flags of the interpreter (the bench's, which runs `run`) say of
    profile-guided and link-time optimization. The same code cost 2 to 10% less CPU in
    `run` with both (README, Throughput), and the image's Python has both: a figure
    measured without them overstates the image's. Only the flags are read: a distribution
    may optimize its build otherwise (Debian's Python does), and then they name neither."""
    try:
        flags = shlex.split(config_args or "")
    except ValueError:  # not autoconf's quoting: nothing to read
        flags = []
    if not flags:
        return "configure flags unknown"
    pgo = lto = False
    for flag in flags:  # as configure reads them: the last of each wins
        if flag in ("--enable-optimizations", "--enable-optimizations=yes"):
            pgo = True
        elif flag in ("--disable-optimizations", "--enable-optimizations=no"):
            pgo = False
        elif flag == "--with-lto" or flag.startswith("--with-lto="):
            lto = flag != "--with-lto=no"
        elif flag == "--without-lto":
            lto = False
    if pgo and lto:
        return "configured with PGO and LTO"
    if pgo or lto:
        return "configured with PGO, without LTO" if pgo else "configured with LTO, without PGO"
    return "configure flags name neither PGO nor LTO"


def python_build_of(python: Path | str = sys.executable) -> str:
    """``python_build`` of the interpreter at ``python``, by running it (a virtual
    environment's reports its base interpreter's flags)."""
    try:
        flags = subprocess.run(
            [str(python), "-c", _PRINT_CONFIG_ARGS],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return python_build(None)
    return python_build(flags)
