"""The scan answer's fast JSON writes exactly the bytes the standard library writes."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ingest.render import _answer_json

TEXT = st.text()  # any text, control characters, CJK and lone surrogates included
ANSWERS = st.fixed_dictionaries(
    {
        "seq": st.none() | st.integers(min_value=-(2**70), max_value=2**70),
        "ok": st.booleans(),
        "person": st.none() | TEXT,
        "message": TEXT,
        "flags": st.lists(TEXT, max_size=3),
    }
)


@settings(max_examples=500)
@given(ANSWERS)
def test_an_answer_is_written_as_json_writes_it(body: dict[str, object]) -> None:
    """A reader that parses answers byte for byte (or a test that compares them) must not see
    the switch to orjson: the same bytes, or the same error for text UTF-8 cannot carry."""
    try:
        expected = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        try:
            _answer_json(body)
        except UnicodeEncodeError:
            return
        raise AssertionError("a lone surrogate must fail as it did before") from None
    assert _answer_json(body) == expected
