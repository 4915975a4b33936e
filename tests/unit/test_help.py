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
