"""The compact hash index behind duplicate and leakage warnings."""

from __future__ import annotations

from datacheck.duplicates import HashIndex
from tests.datacheck.factories import chats, jsonl, validate


def test_groups_and_shared_hashes_across_buckets():
    index = HashIndex()
    for line, value in enumerate([5, 7, 5, -3, 7, 5, 2**40 + 5], 1):
        index.add(hash(value), line)
    assert sorted(index.groups()) == [[1, 3, 6], [2, 5]]
    other = HashIndex(tagged=False)
    for value in (7, -3, 99):
        other.add(hash(value))
    assert sorted(index.shared_with(other)) == [2, 4, 5]


def test_hashes_past_63_bits_empty_indexes_and_adding_after_a_search():
    index, other = HashIndex(), HashIndex(tagged=False)
    assert list(index.groups()) == [] and list(index.shared_with(other)) == []
    big = 2**64 - 5  # xxh3 digests use all 64 bits; -5 is the same hash modulo 2**64
    for line, value in enumerate([big, 1, -5, 2**63, 1, 2**63], 1):
        index.add(value, line)
    assert sorted(index.groups()) == [[1, 3], [2, 5], [4, 6]]
    index.add(big, 7)  # the search holds no view of the arrays, so they can still grow
    other.add(2**63)
    assert sorted(index.groups()) == [[1, 3, 7], [2, 5], [4, 6]]
    assert sorted(index.shared_with(other)) == [4, 6]


def test_many_duplicates_are_counted_and_the_first_lines_listed():
    rows = chats(300)
    report = validate(jsonl(*rows, *rows, *rows[:50]), max_warning_lines=5)
    (warning,) = [w for w in report.warnings if w.kind == "duplicates"]
    assert warning.count == 350 and report.stats.duplicates == 350
    assert warning.lines == [301, 302, 303, 304, 305]
    assert "(for example line 301 repeats line 1)" in warning.message
