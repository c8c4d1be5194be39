"""The fault grammar of simulated agents (FaultCommand.fault), as pure functions.

A fault is a flag ("lost", "slowdown", "remap_failure", "remap_pending",
"retired_pending") or a kind with a value ("xid=79", "temperature=95",
"ecc=2"). Clearing names a kind ("xid" drops undrained Xids; a value after
"=" is ignored) or nothing, which clears every fault of the GPU. The
scheduler checks a fault before relaying it, so a typo is the caller's
INVALID_ARGUMENT rather than a line in the agent's log; the simulated agent
parses with the same functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scheduler.domain.errors import quoted

FLAG_FAULTS = ("lost", "slowdown", "remap_failure", "remap_pending", "retired_pending")
VALUE_FAULTS = {"xid": "xid=79", "temperature": "temperature=95", "ecc": "ecc=2"}
FAULT_KINDS = (*VALUE_FAULTS, *FLAG_FAULTS)
FAULT_HELP = "one of " + ", ".join(f'"{f}"' for f in (*VALUE_FAULTS.values(), *FLAG_FAULTS))
# Xids and ECC counts travel as uint32 in health reports; PostgreSQL has no unsigned type.
MAX_COUNT = 2**31 - 1


@dataclass(frozen=True)
class Fault:
    kind: str
    value: float = 1.0  # flags: 1.0


def parse_fault(text: str) -> Fault:
    """Fault("xid", 79.0) from "xid=79"; ValueError naming what is wrong otherwise."""
    kind, sep, raw = text.strip().partition("=")
    if kind in FLAG_FAULTS:
        if sep:
            raise ValueError(f"fault {kind!r} takes no value, got {quoted(text)}")
        return Fault(kind)
    if kind not in VALUE_FAULTS:
        raise ValueError(f"unknown fault {quoted(text)}: expected {FAULT_HELP}")
    try:
        value = float(raw) if kind == "temperature" else float(int(raw))
    except ValueError:
        wanted = "a number" if kind == "temperature" else "an integer"
        example = VALUE_FAULTS[kind]
        raise ValueError(f"fault {quoted(text)}: {kind} needs {wanted}, e.g. {example!r}") from None
    if not _in_range(kind, value):
        raise ValueError(f"fault {quoted(text)}: {kind} value out of range")
    return Fault(kind, value)


def _in_range(kind: str, value: float) -> bool:
    if not math.isfinite(value):
        return False
    if kind == "xid":
        return 1 <= value <= MAX_COUNT
    if kind == "ecc":
        return 0 <= value <= MAX_COUNT
    return True


def parse_clear(text: str) -> str:
    """The kind of fault to clear ("" for all of them); ValueError for an unknown kind."""
    kind = text.strip().partition("=")[0]
    if kind and kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {quoted(text)}: expected {FAULT_HELP}")
    return kind


def check_fault_command(fault: str, clear: bool) -> None:
    """ValueError unless a simulated agent would accept (fault, clear)."""
    if clear:
        parse_clear(fault)
    else:
        parse_fault(fault)
