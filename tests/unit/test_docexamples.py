"""The docs' example runner's own rules: what an example is, and what matches it."""

from __future__ import annotations

from pathlib import Path

from tests.docexamples import examples_in, masked, prints_what_is_shown

DOC = """Some text.

<!-- example: deadletters -->
```
context line, not checked
$ user-events-consumer dlq show 0:9
no dead letter at 0:9
$ echo $?
1

$ user-events-consumer status
```

```
make dev    # a block without a $ line is not an example
```

```
$ unnamed
```
"""


def test_examples_are_the_blocks_with_commands_and_carry_their_world(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(DOC)
    first, unnamed = examples_in(path)
    assert (first.world, first.line, unnamed.world) == ("deadletters", 4, None)
    assert [(c.line, c.text, c.shows) for c in first.commands] == [
        (6, "user-events-consumer dlq show 0:9", ("no dead letter at 0:9",)),
        (8, "echo $?", ("1",)),  # the blank line before the next command is not output
        (11, "user-events-consumer status", ()),
    ]


def test_times_ids_durations_and_ports_are_masked_and_spaces_folded() -> None:
    printed = (
        "06:40:01 INFO    at 2026-12-06T06:40:01.123+00:00 id "
        "d7fd700d-807b-4d40-ade4-b50288c9b732 lag 14.4 ts 1795924961429 on localhost:41234"
    )
    assert masked(printed) == (
        "<clock> INFO at <time> id <uuid> lag <seconds> ts <epoch-ms> on localhost:<port>"
    )


def test_the_same_text_with_other_times_and_alignment_matches() -> None:
    shown = ("        1       3   14.4  2026-11-29T04:01:14Z",)
    assert prints_what_is_shown("  1 3 2.001 2026-12-06T06:00:00Z\n", shown)
    assert not prints_what_is_shown("  1 4 2.001 2026-12-06T06:00:00Z\n", shown)


def test_an_ellipsis_stands_for_text_in_a_line_or_for_whole_lines() -> None:
    shown = ("first", "...", "a ... b", "last")
    assert prints_what_is_shown("first\nx\ny\na 1 2 3 b\nlast\n", shown)
    assert prints_what_is_shown("first\na - b\nlast\n", shown)  # no line for "..."
    assert not prints_what_is_shown("first\na 1 2 3 c\nlast\n", shown)
    assert not prints_what_is_shown("first\na b\nlast\nmore\n", shown)  # nothing after


def test_a_command_that_prints_nothing_matches_only_an_empty_showing() -> None:
    assert prints_what_is_shown("", ())
    assert not prints_what_is_shown("something\n", ())
    assert not prints_what_is_shown("", ("something",))


def test_an_example_indented_in_a_list_item_is_read_without_its_indent(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(
        "1. A step:\n\n   <!-- example: lag -->\n   ```\n   $ user-events-consumer status\n"
        "   topic user-events\n   ```\n"
    )
    [example] = examples_in(path)
    assert example.world == "lag"
    assert [(c.text, c.shows) for c in example.commands] == [
        ("user-events-consumer status", ("topic user-events",))
    ]
