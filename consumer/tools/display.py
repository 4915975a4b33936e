"""What the tools show a person: tables and times. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned (a column of digits, a
    dot, a minus; "-" or "?" for a missing one), text left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    numeric = [bool(rows) and all(_is_number(row[i]) for row in rows) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


def _is_number(cell: str) -> bool:
    return cell in ("-", "?") or cell.replace(".", "", 1).lstrip("-").isdigit()


def utc_text(moment: datetime, timespec: str = "seconds") -> str:
    """``moment`` in RFC 3339, in UTC with a ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")
