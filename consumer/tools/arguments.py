"""The tools' arguments: times, partition:offset pairs and positions, parsed or refused in
one line that names the flag and what is wrong (exit 2)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from datetime import datetime

from consumer.tools.errors import BadArgument

PAIRS = re.compile(r"^\s*\d+\s*:\s*\d+\s*(,\s*\d+\s*:\s*\d+\s*)*$")
POSITION = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*$")  # signed: to say what is wrong


TIME_EXAMPLE = "2026-01-01T00:00:00Z"
PAIRS_EXAMPLE = "0:42,2:7"


def named(flag: str | None, text: str) -> str:
    """How a refusal starts: the flag (or argument) first, then the value as given."""
    return f"{flag} {text!r}" if flag else repr(text)


def parse_time(text: str, flag: str | None = None) -> datetime:
    """An RFC 3339 time with an offset (``Z`` or ``+hh:mm``); ``flag`` names it in the
    refusal: ``--since 'yesterday' is not an RFC 3339 time such as ...``."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadArgument(
            f"{named(flag, text)} is not an RFC 3339 time such as {TIME_EXAMPLE}"
        ) from None
    if moment.tzinfo is None:
        raise BadArgument(f"{named(flag, text)} has no UTC offset (add Z or +hh:mm)")
    return moment


def parse_pairs(text: str, flag: str | None = None) -> dict[int, int]:
    """``"0:10,2:5"`` -> {0: 10, 2: 5}; ``flag`` names it in the refusal."""
    if not PAIRS.match(text):
        if all(POSITION.match(item) for item in text.split(",")):
            for item in text.split(","):
                parse_position(item, flag, whole=text)  # says which number is negative
        raise BadArgument(
            f"{named(flag, text)} is not a list of partition:offset pairs such as {PAIRS_EXAMPLE}"
        )
    pairs: dict[int, int] = {}
    for item in text.split(","):
        partition, offset = (int(part) for part in item.split(":"))
        if partition in pairs:
            raise BadArgument(f"{named(flag, text)} gives partition {partition} twice")
        pairs[partition] = offset
    return pairs


def parse_position(
    text: str, flag: str | None = None, *, whole: str | None = None
) -> tuple[int, int]:
    """One ``partition:offset``, each 0 or more (a leading '-' included: see
    ``accept_negative_values``); ``whole`` is the value to quote when ``text`` is a part."""
    given = named(flag, text if whole is None else whole)
    match = POSITION.match(text)
    if not match:
        raise BadArgument(f"{given} is not a partition:offset such as 0:42")
    partition, offset = int(match[1]), int(match[2])
    if partition < 0:
        raise BadArgument(f"{given} has partition {partition}: a partition is 0 or more")
    if offset < 0:
        raise BadArgument(f"{given} has offset {offset}: an offset is 0 or more")
    return partition, offset


def check_partitions(
    flag: str | None, text: str, wanted: Iterable[int], partitions: Iterable[int], topic: str
) -> None:
    """``BadArgument`` when ``wanted`` names a partition the topic does not have."""
    have = sorted(set(partitions))
    missing = sorted(set(wanted) - set(have))
    if missing:
        if not have:
            held = "no partition"
        elif len(have) == 1:
            held = f"partition {have[0]} only"
        else:
            held = f"partitions {have[0]} to {have[-1]}"
        raise BadArgument(
            f"{named(flag, text)}: topic {topic!r} has no partition {missing[0]} (it has {held})"
        )


def accept_negative_values(parser: argparse.ArgumentParser) -> None:
    """Let a value such as ``-1:0`` reach the tool's own check (a clear one-line refusal)
    instead of argparse, which takes anything starting with '-' for an option."""
    parser._negative_number_matcher = re.compile(r"^-\d+(:-?\d+(,\s*-?\d+:-?\d+)*)?$|^-\d*\.\d+$")
