"""The simulated agents' fault grammar, checked by the scheduler before relaying."""

from __future__ import annotations

import pytest

from scheduler.domain.errors import quoted
from scheduler.domain.faults import (
    FAULT_KINDS,
    Fault,
    check_fault_command,
    parse_clear,
    parse_fault,
)


@pytest.mark.parametrize(
    ("text", "fault"),
    [
        ("xid=79", Fault("xid", 79.0)),
        (" xid=13 ", Fault("xid", 13.0)),
        ("temperature=95", Fault("temperature", 95.0)),
        ("temperature=87.5", Fault("temperature", 87.5)),
        ("ecc=0", Fault("ecc", 0.0)),
        ("ecc=2", Fault("ecc", 2.0)),
        ("lost", Fault("lost")),
        ("slowdown", Fault("slowdown")),
        ("remap_failure", Fault("remap_failure")),
        ("remap_pending", Fault("remap_pending")),
        ("retired_pending", Fault("retired_pending")),
    ],
)
def test_each_documented_fault_parses(text: str, fault: Fault) -> None:
    assert parse_fault(text) == fault


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bogus", "unknown fault 'bogus'"),
        ("", "unknown fault ''"),
        ("xid", "xid needs an integer"),
        ("xid=abc", "xid needs an integer"),
        ("xid=7.5", "xid needs an integer"),
        ("xid=0", "out of range"),
        ("xid=4294967296", "out of range"),
        ("ecc=-1", "out of range"),
        ("temperature=hot", "temperature needs a number"),
        ("temperature=nan", "out of range"),
        ("temperature=inf", "out of range"),
        ("lost=1", "takes no value"),
        ("lost\x00", "unknown fault"),
    ],
)
def test_a_bogus_fault_is_a_value_error_naming_it(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(text)


def test_an_error_quotes_only_a_prefix_of_huge_input() -> None:
    with pytest.raises(ValueError) as info:
        parse_fault("x" * 20_000)
    assert len(str(info.value)) < 400
    assert "(20000 characters)" in str(info.value)


def test_clear_takes_a_kind_or_nothing() -> None:
    assert parse_clear("") == ""
    assert parse_clear("xid") == "xid"
    assert parse_clear("xid=79") == "xid"
    for kind in FAULT_KINDS:
        assert parse_clear(kind) == kind
    with pytest.raises(ValueError, match="unknown fault 'melted'"):
        parse_clear("melted")


def test_a_command_is_checked_by_its_mode() -> None:
    check_fault_command("", clear=True)
    check_fault_command("lost", clear=False)
    with pytest.raises(ValueError):
        check_fault_command("", clear=False)
    with pytest.raises(ValueError):
        check_fault_command("bogus", clear=True)


def test_quoted_keeps_short_values_and_cuts_long_ones() -> None:
    assert quoted("urgent") == "'urgent'"
    assert quoted("a\x00b") == "'a\\x00b'"
    long = quoted("x" * 100, limit=8)
    assert long == "'xxxxxxxx'… (100 characters)"
