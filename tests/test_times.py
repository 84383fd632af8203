"""Go's RFC 3339 times in the bookkeeping files (containers_storage._jsonstore)."""

from __future__ import annotations

import pytest
from containers_storage._jsonstore import ZERO_TIME, format_time, parse_time


@pytest.mark.parametrize(
    "text",
    [
        ZERO_TIME,
        "0999-03-04T05:06:07.5Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T00:00:00Z",
        "2023-05-06T05:08:09.123456789Z",
        "9999-12-31T23:59:59.000000001Z",
    ],
)
def test_utc_times_round_trip_as_go_writes_them(text: str) -> None:
    assert format_time(parse_time(text)) == text


def test_offsets_and_garbage() -> None:
    assert parse_time("2023-05-06T07:08:09.25+02:00") == parse_time("2023-05-06T05:08:09.25Z")
    assert parse_time("1970-01-01T00:00:01Z") == 1_000_000_000
    # Unparseable or empty text is Go's zero time, written with a four-digit year.
    assert parse_time("") == parse_time("not a time") == parse_time(ZERO_TIME)
    assert format_time(parse_time("")) == "0001-01-01T00:00:00Z"
