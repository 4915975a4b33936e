"""Fresh virtual environments for the install tests: what someone gets who installs a
distribution of this repository as its documentation says, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def fresh_venv(directory: Path) -> Path:
    """A new virtual environment in ``directory``, without pip; its python."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", directory], check=True, timeout=60
    )
    return directory / "bin" / "python"


def pip_install(python: Path, *requirements: str | Path, cwd: Path | None = None) -> None:
    """``pip install REQUIREMENTS`` into ``python``'s environment, run in ``cwd``. This pip
    (--python) spares the new environment ensurepip's six seconds, and its cache spares
    the downloads."""
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--quiet", *requirements],
        cwd=cwd,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        check=True,
        timeout=300,
    )
