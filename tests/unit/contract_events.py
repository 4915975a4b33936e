"""Hypothesis strategies for user events as publishers write them: a valid event with a
break from a catalogue that has an entry per rule of the contract (a time's month, hour,
offset..., a sequence's notation and range, a string's length, whitespace in a source,
U+0000, an email, an update without fields, a missing or unknown attribute, a type that
is not one). A break's values cluster at the rule's bounds, where a schema and a decoder
part ways: just past the bound first (hour 24), which hypothesis draws most often. One break at a time is what finds a rule they apply
differently: with two, either may hide the other; the tests draw events per break."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from hypothesis import strategies as st
from user_events_schemas.models import EVENT_TYPES, MAX_SEQUENCE

from tests.unit.test_emails import EDGE_CASES as EMAIL_EDGE_CASES

JsonValue = Any
Event = dict[str, JsonValue]

json_values: st.SearchStrategy[JsonValue] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
# Every character some regex dialect calls whitespace (Unicode White_Space, ECMA-262's
# \s with U+FEFF, Python's with U+001C..U+001F) and some that only look like it.
SPACES = (
    "\t\n\x0b\x0c\r \x1c\x1d\x1e\x1f\x85\xa0\u1680\u180e\u2000\u2005\u200a\u200b"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_PLAIN = st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])
_NO_SPACE = st.characters(blacklist_characters=SPACES + "\x00", blacklist_categories=["Cs"])
ATTRIBUTES = (
    *("specversion", "id", "source", "type", "subject", "time"),
    *("sequence", "datacontenttype", "dataschema", "data"),
)
STORED_TEXTS = ("id", "source", "subject", "datacontenttype", "dataschema")


def _time(event: Event) -> str:
    """The event's time, or a valid one where an earlier break left none to work on."""
    time = event.get("time")
    return time if isinstance(time, str) and len(time) >= 20 else "2026-11-25T10:15:30.120Z"


def _data(event: Event) -> dict[str, JsonValue]:
    data = event.get("data")
    return data if isinstance(data, dict) else {}


def with_inserted(text: str, char: str, at: int) -> str:
    at %= len(text) + 1
    return text[:at] + char + text[at:]


# -- valid parts ------------------------------------------------------------------------

texts = st.text(_PLAIN, min_size=1, max_size=8)
sources = st.text(_NO_SPACE, max_size=8).map(lambda s: "/" + s)
_LOCAL_PARTS = st.sampled_from(["ada", "a.b", "x+tag", "O'Brien", "用户", "A_Z-9"])
_DOMAINS = st.sampled_from(["example.com", "Example.COM", "mail.example.org", "bücher.example"])
emails = st.builds("{}@{}".format, _LOCAL_PARTS, _DOMAINS)
_FRACTIONS = st.sampled_from(["", ".1", ".120", ".123456", ".1234567", ".000000000001"])


@st.composite
def times(draw: st.DrawFn) -> str:
    """An RFC 3339 text of a real instant, its offset and fraction drawn."""
    when = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    sign = "-" if minutes < 0 else "+"
    offset = draw(st.sampled_from([f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}", "Z"]))
    return f"{when.year:04d}-{when:%m-%dT%H:%M:%S}{draw(_FRACTIONS)}{offset}"


sequences = st.integers(1, MAX_SEQUENCE) | st.integers(1, MAX_SEQUENCE).map(str)


@st.composite
def data_of(draw: st.DrawFn, event_type: str) -> dict[str, JsonValue] | None:
    if event_type == "user.created":
        return {"email": draw(emails), "name": draw(texts)}
    if event_type == "user.updated":
        fields = draw(st.sampled_from([("name",), ("email",), ("email", "name")]))
        return {f: draw(emails if f == "email" else texts) for f in fields}
    if event_type == "user.deleted":
        return draw(st.sampled_from([{}, None]))
    # Loudly: a guess (say {}) would make every generated event of a new type invalid,
    # and the tests of valid events would pass without ever drawing one.
    raise NotImplementedError(f"no valid data for {event_type!r}: teach data_of its fields")


@st.composite
def valid_events(draw: st.DrawFn) -> Event:
    event_type = draw(st.sampled_from(EVENT_TYPES))
    event: Event = {
        "specversion": "1.0",
        "id": draw(texts),
        "source": draw(sources),
        "type": event_type,
        "subject": draw(texts),
        "time": draw(times()),
    }
    for name, values in (
        ("sequence", sequences),
        ("datacontenttype", st.just("application/json") | st.none()),
        ("dataschema", st.just(f"https://schemas.user-events.example/{event_type}.schema.json")),
    ):
        if draw(st.booleans()):
            event[name] = draw(values)
    data = draw(data_of(event_type))
    if data is not None or draw(st.booleans()):
        event["data"] = data
    return event


# -- breaks: each takes a valid event and a draw, and returns what a publisher got wrong --

Break = Callable[[Event, st.DrawFn], JsonValue]


def _time_part(index: int, values: st.SearchStrategy[int], width: int = 2) -> Break:
    """The time with one numeric part (by its position in the text) replaced."""

    def apply(event: Event, draw: st.DrawFn) -> Event:
        time = _time(event)
        start = (0, 5, 8, 11, 14, 17)[index]
        return event | {"time": f"{time[:start]}{draw(values):0{width}d}{time[start + width :]}"}

    return apply


def _with_offset(event: Event, draw: st.DrawFn) -> Event:
    sign = draw(st.sampled_from("+-"))
    hours = draw(st.sampled_from([24, 23, 25, 0]) | st.integers(0, 99))
    minutes = draw(st.sampled_from([60, 59, 61, 0]) | st.integers(0, 99))
    offset = draw(
        st.sampled_from(
            [f"{sign}{hours:02d}:{minutes:02d}", f"{sign}{hours:02d}{minutes:02d}", "z", ""]
        )
    )
    return event | {"time": _time(event)[:19] + offset}


def _at_the_edges(event: Event, draw: st.DrawFn) -> Event:
    """Years 1 and 9999, where an offset can take the instant out of range in UTC."""
    date = draw(st.sampled_from(["0001-01-01", "9999-12-31", "0000-12-31", "0001-01-02"]))
    offset = f"{draw(st.sampled_from('+-'))}{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}"
    clock = f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:00"
    return event | {"time": f"{date}T{clock}{draw(_FRACTIONS)}{offset}"}


def _time_shape(event: Event, draw: st.DrawFn) -> Event:
    time = _time(event)
    return (
        event
        | {
            "time": draw(
                st.sampled_from(
                    [
                        time.replace("T", " "),
                        time[:16] + time[19:],  # no seconds
                        time[:19],  # no offset
                        time + "\n",
                        " " + time,
                        time[:19] + "." + time[19:].lstrip(".0123456789"),
                        time.replace("0", "\u0660"),  # an Arabic-Indic zero: a digit, not ASCII
                        time[:10],
                        "1700000000",
                    ]
                )
                | json_values
            )
        }
    )


def _sequence(event: Event, draw: st.DrawFn) -> Event:
    odd = st.sampled_from(
        [
            *(str(MAX_SEQUENCE + 1), MAX_SEQUENCE + 1, "0", 0, str(MAX_SEQUENCE), MAX_SEQUENCE),
            *(-1, 1.0, 7.0, 1e3, 1.5, -0.0, True, False, None, "00", "007", "", "+1", "-1", " 1"),
            *("1 ", "1_000", "\u0664\u0662", "1\n", "0x1F", "1e3", "1.0"),
        ]
    )
    return event | {
        "sequence": draw(
            odd | st.integers() | st.from_regex(r"\A0{0,3}[0-9]{1,21}\Z") | json_values
        )
    }


def _length(name: str, limit: int) -> Break:
    def apply(event: Event, draw: st.DrawFn) -> Event:
        text = "é" * draw(st.sampled_from([limit + 1, limit, 0, 1, limit - 1]))
        if name == "name":
            return event | {"data": {**_data(event), "name": text}}
        return event | {name: text}

    return apply


def _nul(event: Event, draw: st.DrawFn) -> Event:
    name = draw(st.sampled_from([*STORED_TEXTS, "name", "email"]))
    if name in ("name", "email"):
        data = _data(event)
        return event | {
            "data": {
                **data,
                name: with_inserted(str(data.get(name, "x")), "\x00", draw(st.integers(0, 9))),
            }
        }
    return event | {name: with_inserted(str(event.get(name, "x")), "\x00", draw(st.integers(0, 9)))}


def _space_in_source(event: Event, draw: st.DrawFn) -> Event:
    char = draw(st.sampled_from(SPACES))
    source = event.get("source")
    source = source if isinstance(source, str) else "/a"
    return event | {"source": with_inserted(source, char, draw(st.integers(0, 9)))}


def _email(event: Event, draw: st.DrawFn) -> Event:
    address = draw(emails)
    local, _, domain = address.rpartition("@")
    ideographic = domain.replace(".", "\u3002")  # a dot IDNA maps to "."
    odd = st.sampled_from(
        [
            f"Ada Lovelace <{address}>",
            f'"Lovelace, Ada" <{address}>',
            f"  {address}  ",
            f"{local}@{ideographic}",
            f"{local}@example.test",
            f"{local}@localhost",
            address + "\n",
            "\r" + address,
            address + ">",
            address.upper(),
            *EMAIL_EDGE_CASES,
        ]
    )
    value = draw(odd | st.text(max_size=12) | json_values)
    return event | {"data": {**_data(event), "email": value}}


def _update_fields(event: Event, draw: st.DrawFn) -> Event:
    data = {
        name: value
        for name, value in (("email", draw(emails | st.none())), ("name", draw(texts | st.none())))
        if draw(st.booleans())
    }
    return event | {"type": "user.updated", "data": data}


def _odd_data(event: Event, draw: st.DrawFn) -> Event:
    extra = {draw(st.sampled_from(["plan", "Email", "NAME"])): draw(json_values)}
    return event | {
        "data": draw(st.sampled_from([{**_data(event), **extra}, None]))
        if draw(st.booleans())
        else draw(json_values)
    }


def _attribute(event: Event, draw: st.DrawFn) -> Event:
    name = draw(st.sampled_from(ATTRIBUTES))
    if draw(st.booleans()):
        return {k: v for k, v in event.items() if k != name}
    return event | {name: draw(json_values | st.sampled_from(["", "1.0", "application/json"]))}


def _type(event: Event, draw: st.DrawFn) -> Event:
    odd = st.sampled_from(
        [*EVENT_TYPES, "user.renamed", "User.Created", "user.created ", "", 1, None]
    )
    return event | {"type": draw(odd)}


def _specversion(event: Event, draw: st.DrawFn) -> Event:
    return event | {
        "specversion": draw(st.sampled_from(["1", "1.0 ", "0.3", "1.0\n", 1.0, 1, None]))
    }


def _extension(event: Event, draw: st.DrawFn) -> Event:
    return event | {draw(st.sampled_from(["traceparent", "partitionkey", "x"])): draw(json_values)}


def _not_an_object(event: Event, draw: st.DrawFn) -> JsonValue:
    return draw(json_values.filter(lambda v: not isinstance(v, dict)) | st.just([event]))


BREAKS: dict[str, Break] = {
    "time: year": _time_part(0, st.sampled_from([0, 1, 9999]) | st.integers(0, 9999), width=4),
    "time: month": _time_part(1, st.sampled_from([13, 12, 0, 1]) | st.integers(0, 99)),
    "time: day": _time_part(2, st.sampled_from([32, 31, 30, 29, 28, 0, 1]) | st.integers(0, 99)),
    "time: hour": _time_part(3, st.sampled_from([24, 23, 25, 0]) | st.integers(0, 99)),
    "time: minute": _time_part(4, st.sampled_from([60, 59, 61, 0]) | st.integers(0, 99)),
    "time: second": _time_part(5, st.sampled_from([60, 59, 61, 0]) | st.integers(0, 99)),
    "time: February 29": lambda e, draw: (
        e | {"time": f"{draw(st.integers(1, 9999)):04d}-02-29{_time(e)[10:]}"}
    ),
    "time: offset": _with_offset,
    "time: years 1 and 9999": _at_the_edges,
    "time: shape": _time_shape,
    "sequence": _sequence,
    "id: length": _length("id", 128),
    "subject: length": _length("subject", 128),
    "source: length": _length("source", 512),
    "data.name: length": _length("name", 200),
    "U+0000 in a stored string": _nul,
    "whitespace in source": _space_in_source,
    "data.email": _email,
    "user.updated: its fields": _update_fields,
    "data: extra fields, null, not an object": _odd_data,
    "an attribute missing or of any JSON": _attribute,
    "type": _type,
    "specversion": _specversion,
    "an extension attribute": _extension,
    "none": lambda event, draw: event,
    "not an object": _not_an_object,
}


@st.composite
def events(draw: st.DrawFn, focus: str) -> JsonValue:
    """A valid event with the ``focus`` break, and now and then one more of any kind."""
    event: JsonValue = BREAKS[focus](draw(valid_events()), draw)
    if isinstance(event, dict) and draw(st.sampled_from([False, False, False, True])):
        event = BREAKS[draw(st.sampled_from(sorted(BREAKS)))](event, draw)
    return event
