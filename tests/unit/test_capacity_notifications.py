"""Capacity notifications name the nodes and usage a batch changed (issue 17),
split to fit PostgreSQL's payload limit, and a replica can tell whether its
last full reload already saw the notifying transaction."""

from __future__ import annotations

from scheduler.allocator.capacity import (
    TxSnapshot,
    capacity_payloads,
    parse_capacity,
)
from scheduler.store.allocations import TXID_MARK


def _as_notified(payload: str, txid: int) -> str:
    """What the listener reads: PostgreSQL put the transaction id in."""
    return payload.replace(TXID_MARK, str(txid), 1).split(":", 2)[2]


def test_a_payload_names_nodes_and_usage_deltas() -> None:
    [payload] = capacity_payloads("r1", {"n2", "n1"}, {"team-a": 1.5, "idle": 0.0}, 7000)
    change = parse_capacity(_as_notified(payload, 42))
    assert change is not None
    assert (change.txid, change.nodes, dict(change.usage)) == (42, ("n1", "n2"), {"team-a": 1.5})


def test_a_long_node_list_is_split_and_the_usage_sent_once() -> None:
    nodes = {f"node-{i:05d}" for i in range(2000)}
    payloads = capacity_payloads("r1", nodes, {"team-a": -8.0}, 7000)
    assert len(payloads) > 1 and all(len(p) <= 7000 for p in payloads)
    changes = [parse_capacity(_as_notified(p, 7)) for p in payloads]
    assert all(c is not None and c.txid == 7 for c in changes)
    assert {n for c in changes if c for n in c.nodes} == nodes
    assert [dict(c.usage) for c in changes if c and c.usage] == [{"team-a": -8.0}]


def test_nothing_named_or_too_much_usage_asks_for_a_full_reload() -> None:
    assert capacity_payloads("r1", (), {}, 7000) == ["capacity:r1:"]
    tenants = {f"tenant-{i:04d}": 1.0 for i in range(1000)}
    assert capacity_payloads("r1", {"n1"}, tenants, 7000) == ["capacity:r1:"]
    assert parse_capacity("") is None
    assert parse_capacity("12;not json") is None


def test_a_snapshot_sees_transactions_committed_before_it() -> None:
    snapshot = TxSnapshot.parse("100:105:101,103")
    assert snapshot.sees(99) and snapshot.sees(102) and snapshot.sees(104)
    assert not snapshot.sees(101), "in progress when the snapshot was taken"
    assert not snapshot.sees(105) and not snapshot.sees(200), "began after it"
    assert TxSnapshot.parse("7:7:").sees(6)
