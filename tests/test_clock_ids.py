"""Timestamps render exactly as `datetime` would; ids are RFC 9562 version-7 UUID text."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from hub.core.clock import parse_iso, to_iso
from hub.core.ids import new_id

# 1900-01-01 .. 2200-01-01 in microseconds.
_MICROS = st.integers(min_value=-2_208_988_800_000_000, max_value=7_258_118_400_000_000)


@given(st.lists(_MICROS, min_size=1, max_size=5))
def test_to_iso_matches_datetime_and_round_trips(values: list[int]) -> None:
    # Several values in a row: the one-second cache must not leak between seconds.
    for us in [*values, *values[::-1]]:
        expected = datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)
        assert to_iso(us) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert parse_iso(to_iso(us)) == us


def test_new_ids_are_distinct_version_7_uuids_that_sort_by_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: Unix time in ms
    # Every variant nibble (8, 9, a, b) shows up: the bits come from the random data.
    assert {text[19] for text in ids} == set("89ab")
    # Beyond the time, 74 random bits: within one millisecond no order, across them creation's.
    time.sleep(0.002)
    later = new_id()
    assert all(text < later for text in ids)
    numbers = [uuid.UUID(text).int for text in ids]
    random_bits = {(n >> 64 & 0xFFF) << 62 | n & ((1 << 62) - 1) for n in numbers}
    assert len(random_bits) == len(ids)
