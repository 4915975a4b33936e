"""The tools' help: every option says its default, every value its format, and the exit
codes are there."""

from __future__ import annotations

import argparse

import pytest

from consumer.cli import build_parser

# Options that take a value, with an example of its format their help must show.
FORMATS = {
    "replay": {"--from": "2026-01-01T00:00:00Z", "--to": "RFC 3339"},
    "status": {"--max-lag-seconds": "such as 300"},
    "event": {"--at": "such as 3:1200", "--source": "such as /signup"},
    "rebuild": {},
}


def command(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = commands.choices[name]
    return parser


@pytest.mark.parametrize("name", FORMATS)
def test_every_option_of_a_tool_names_its_default_and_its_format(name: str) -> None:
    parser = command(name)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        option = action.option_strings[0]
        text = (action.help or "").lower()
        assert "default" in text or action.required or option in ("--source", "--id", "--at"), (
            name,
            option,
        )
        if option in FORMATS[name]:
            assert FORMATS[name][option].lower() in text, (name, option)
    assert parser.epilog and parser.epilog.startswith("Exit codes: 0 ")


def leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every command that runs something (``dlq list``, not ``dlq``), by its words."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        return [(path, parser)]
    return [
        found
        for name, sub in groups[0].choices.items()
        for found in leaf_commands(sub, (*path, name))
    ]


def test_the_help_of_every_command_shows_its_exit_codes() -> None:
    commands = leaf_commands(build_parser())
    assert ("dlq", "redrive") in [path for path, _ in commands]
    missing = [
        " ".join(path) for path, parser in commands if "Exit codes:" not in parser.format_help()
    ]
    assert not missing, f"no 'Exit codes:' in the help of: {', '.join(missing)}"
