"""The official AsyncAPI parser (@asyncapi/parser from npm), installed once and reused.

The version is pinned by package.json and package-lock.json beside this file. ``npm ci``
installs it into .cache/npm-asyncapi/ (git-ignored) the first time, and again only when
the lock file changes; test workers that start together wait for one another's install.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
CACHE = ROOT / ".cache" / "npm-asyncapi"
SCRIPT = HERE / "validate.cjs"
# Severities of the parser's diagnostics (Spectral's): 0 error, 1 warning, 2 information.
ERROR, WARNING = 0, 1


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: the AsyncAPI check needs Node.js 18+ and npm")
    return found


def installed_parser() -> Path:
    """The node_modules folder holding the pinned parser, installed if it is not yet."""
    lock = (HERE / "package-lock.json").read_bytes()
    stamp = CACHE / "installed-package-lock.json"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "install.lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not (stamp.exists() and stamp.read_bytes() == lock):
            stamp.unlink(missing_ok=True)
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(HERE / name, CACHE / name)
            npm = [_tool("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
            done = subprocess.run(
                [*npm, "--loglevel=error"], cwd=CACHE, capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                pytest.fail(f"npm ci of the AsyncAPI parser failed:\n{done.stderr[-3000:]}")
            stamp.write_bytes(lock)
    return CACHE / "node_modules"


def parse(modules: Path, *documents: Path) -> list[dict[str, Any]]:
    """What the parser says of each document: its diagnostics, and its operations as it
    resolved them (None when the document did not parse)."""
    done = subprocess.run(
        [_tool("node"), str(SCRIPT), *map(str, documents)],
        env={**os.environ, "NODE_PATH": str(modules)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode not in (0, 1):
        pytest.fail(f"the AsyncAPI parser crashed:\n{done.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def problems(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The errors and warnings among a document's diagnostics."""
    return [d for d in result["diagnostics"] if d["severity"] in (ERROR, WARNING)]
