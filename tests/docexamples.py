"""The command examples of the README and docs/, read out of their fenced blocks, and the
rule that says whether a real run printed what an example shows. Pure: the runs are in
tests/integration/test_docs_examples.py.

A block is an example when a line in it starts with ``$ ``: that line is a command, the
lines after it (to the next ``$ ``, or a blank line followed by one) are what it prints,
stdout and stderr together. Lines before the first command are context (log lines, say)
and are not checked. ``$ echo $?`` prints the exit code of the command before it. Each
example names, in an HTML comment on the line before its fence, the world it runs in:
``<!-- example: deadletters -->``; one that names none fails, so that no example is
left unchecked by accident.

What a run prints and what the docs show are compared after masking what differs from
run to run (times, ids, durations, ports) and folding runs of spaces (a masked column
shifts the others). ``...`` stands for any text within a line, and a line of ``...``
alone for any number of lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

WORLD_MARK = re.compile(r"<!--\s*example:\s*([\w-]+)\s*-->")
FENCE = re.compile(r"^\s*```")

# Masked in both texts, in this order (a time is masked before its digits look like a
# duration). Each names what it stands for, so a diff still reads.
MASKS = (
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"^\d\d:\d\d:\d\d(?= )", re.MULTILINE), "<clock>"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\b\d{13}\b"), "<epoch-ms>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:<port>"),
    (re.compile(r"\b\d+\.\d+\b"), "<seconds>"),
)


@dataclass(frozen=True, slots=True)
class Command:
    """One ``$`` line of an example and what the docs show it printing."""

    line: int  # 1-based, in its file
    text: str
    shows: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Example:
    """A fenced block with commands, and the world it runs in (None when it names none)."""

    path: Path
    line: int
    world: str | None
    commands: tuple[Command, ...]

    @property
    def where(self) -> str:
        return f"{self.path.name}:{self.line}"


def examples_in(path: Path) -> list[Example]:
    """The examples of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Example] = []
    index = 0
    while index < len(lines):
        if not FENCE.match(lines[index]):
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not FENCE.match(lines[end]):
            end += 1
        # A fence indented in a list item indents its lines as much: read them without.
        indent = len(lines[index]) - len(lines[index].lstrip())
        block = [
            line[indent:] if not line[:indent].strip() else line for line in lines[index + 1 : end]
        ]
        commands = _commands(block, first_line=index + 2)
        if commands:
            mark = WORLD_MARK.search(lines[index - 1]) if index else None
            world = mark.group(1) if mark else None
            found.append(Example(path, index + 1, world, tuple(commands)))
        index = end + 1
    return found


def _commands(block: list[str], first_line: int) -> list[Command]:
    commands: list[Command] = []
    for offset, text in enumerate(block):
        if text.startswith("$ "):
            commands.append(Command(first_line + offset, text[2:].strip(), ()))
        elif commands:
            last = commands[-1]
            commands[-1] = Command(last.line, last.text, (*last.shows, text))
    # A blank line before the next command separates sessions: it is not output.
    return [Command(c.line, c.text, _without_trailing_blanks(c.shows)) for c in commands]


def _without_trailing_blanks(lines: tuple[str, ...]) -> tuple[str, ...]:
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]


def masked(text: str) -> str:
    """``text`` with what varies from run to run masked, runs of spaces folded, and
    trailing blank lines dropped."""
    for pattern, stand_in in MASKS:
        text = pattern.sub(stand_in, text)
    lines = (re.sub(r"[ \t]+", " ", line).rstrip() for line in text.splitlines())
    return "\n".join(lines).strip("\n")


def shown_pattern(shows: tuple[str, ...]) -> re.Pattern[str]:
    """What the docs show, masked, as a pattern that a run's masked output must match:
    ``...`` within a line is any text, a line of ``...`` any number of lines."""
    parts: list[str] = []
    for line in masked("\n".join(shows)).split("\n") if shows else []:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
            continue
        pieces = (re.escape(piece) for piece in line.split("..."))
        parts.append(r"[^\n]*".join(pieces) + r"\n")
    return re.compile("".join(parts), re.DOTALL)


def prints_what_is_shown(printed: str, shows: tuple[str, ...]) -> bool:
    """Whether a command's output matches what the docs show it printing."""
    text = masked(printed)
    return shown_pattern(shows).fullmatch(text + "\n" if text else "") is not None
