"""``user-events-schemas``: the contract's command line, for publishers.

``user-events-schemas validate FILE`` says, per event, ``valid`` or the reason and the
field errors the consumer would dead-letter it with.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from user_events_schemas.validate import Checked, check, errors_json

EXIT_VALID, EXIT_INVALID, EXIT_UNREADABLE = 0, 1, 2

_VALIDATE_HELP = """\
Each event is judged by the rules the consumer applies to a structured-mode record (the
whole CloudEvent as the Kafka value): a line per event, "valid" or the dead-letter reason
(undecodable, invalid, unknown_type) and its field errors as the dlq.errors header has
them. Not judged: what depends on the running service (an update for a user it does not
know, an email another user holds, its MAX_MESSAGE_BYTES).

FILE holds one event (a JSON object), a JSON array of events, or JSON Lines (an event a
line); "-" reads standard input.

exit codes: 0 every event is valid; 1 some event would be dead-lettered; 2 FILE cannot be
read, or holds no event."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    name = "<stdin>" if args.file == "-" else args.file
    try:
        data = sys.stdin.buffer.read() if args.file == "-" else _read(args.file)
    except OSError as exc:
        print(f"user-events-schemas: cannot read {name}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    checked = check(data, name)
    if not checked:
        print(f"user-events-schemas: no events in {name}", file=sys.stderr)
        return EXIT_UNREADABLE
    for item in checked:
        print(_as_json(item) if args.json else _as_text(item))
    refused = sum(item.rejection is not None for item in checked)
    events = "1 event" if len(checked) == 1 else f"{len(checked)} events"
    print(
        f"{events}: {len(checked) - refused} valid, {refused} would be dead-lettered",
        file=sys.stderr,
    )
    return EXIT_INVALID if refused else EXIT_VALID


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _as_text(item: Checked) -> str:
    if item.rejection is None:
        return f"{item.where}: valid"
    return f"{item.where}: {item.rejection.reason} {errors_json(item.rejection)}"


def _as_json(item: Checked) -> str:
    if item.rejection is None:
        return json.dumps({"event": item.where, "valid": True})
    entry = {
        "event": item.where,
        "valid": False,
        "reason": str(item.rejection.reason),
        "errors": json.loads(errors_json(item.rejection)),
    }
    return json.dumps(entry)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="user-events-schemas",
        description="The user events contract, for publishers.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    validate = commands.add_parser(
        "validate",
        help="say of each event whether the consumer would apply it, and why not",
        description=_VALIDATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("file", metavar="FILE", help='events to check; "-" for standard input')
    validate.add_argument(
        "--json", action="store_true", help="a JSON object per event instead of a line of text"
    )
    return parser


if __name__ == "__main__":
    sys.exit(main())
