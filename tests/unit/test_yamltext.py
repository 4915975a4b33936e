"""user_events_schemas.yamltext: the YAML it writes reads back, with PyYAML (YAML 1.1),
as the very data it was written from, whatever the strings hold."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from user_events_schemas.yamltext import dump

# Strings near YAML's traps: indicators, comments, booleans of YAML 1.1, numbers, quotes,
# line breaks, tabs, long runs of words that get folded, and any text at all.
TRAPS = st.text(alphabet="ab -:#/$_.'()+\n\t yYnNoO01\"\\", max_size=300)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | TRAPS
)
DATA = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text() | TRAPS, inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=500, deadline=None)
@given(DATA)
def test_what_it_writes_reads_back_as_the_same_data(value: Any) -> None:
    assert yaml.safe_load(dump(value)) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (
            {"a": "plain words", "b": "yes", "c": "1.0", "d": "x: y"},
            'a: plain words\nb: "yes"\nc: "1.0"\nd: "x: y"\n',
        ),
        (
            {"a": {"b": [1, {"c": None}]}, "e": {}, "f": []},
            "a:\n  b:\n    - 1\n    - c: null\ne: {}\nf: []\n",
        ),
        ({"a": "line one\nline two"}, "a: |-\n  line one\n  line two\n"),
        (
            {"a": " ".join(["word"] * 30)},
            "a: >-\n  " + " ".join(["word"] * 19) + "\n  " + " ".join(["word"] * 11) + "\n",
        ),
    ],
    ids=[
        "quoted only when needed",
        "nesting and empty containers",
        "line breaks as a literal block",
        "long text folded",
    ],
)
def test_it_writes_plain_block_style(value: Any, text: str) -> None:
    assert dump(value) == text


def test_data_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError):
        dump({"a": {1, 2}})
    with pytest.raises(ValueError):
        dump([float("nan")])
