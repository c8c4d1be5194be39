"""What a chaos run checks afterwards: every client's log against the
database (nothing acknowledged lost or changed, one allocation per request
id, no UNKNOWN/INTERNAL answer, no database detail in a status) and the SQL
invariants over every GPU (tests/integration/test_schema_invariants.py says
what the schema alone guarantees; here the whole row set is checked)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ACTIVE = ("placed", "running", "preempting")
# Answers that carry nothing acknowledged either way: the call may or may not have happened.
UNDECIDED = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED", "GAVE_UP", "CANCELLED"}


@dataclass
class ClientLogs:
    """Every client's log, read once: per request key, what came back."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    allocated: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    ack_states: dict[str, str] = field(default_factory=dict)  # allocation id -> first answer
    released_ok: set[str] = field(default_factory=set)
    release_tried: set[str] = field(default_factory=set)
    codes: Counter[str] = field(default_factory=Counter)

    @classmethod
    def read(cls, directory: Path) -> ClientLogs:
        logs = cls()
        for path in sorted(directory.glob("client-*.jsonl")):
            for line in path.read_text().splitlines():
                try:
                    logs.add(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a line cut short by the end of the run
        return logs

    def add(self, e: dict[str, Any]) -> None:
        self.entries.append(e)
        self.codes[f"{e['rpc']} {e['code']}"] += 1
        if e["rpc"] == "Allocate" and e["code"] == "OK":
            self.allocated[e["key"]].add(e["allocation_id"])
            self.ack_states.setdefault(e["allocation_id"], e["state"])
        elif e["rpc"] == "Release":
            self.release_tried.add(e["key"])
            if e["code"] == "OK":
                self.released_ok.add(e["key"])

    def unknown(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["code"] in ("UNKNOWN", "INTERNAL")]

    def leaky(self, database_port: int) -> list[dict[str, Any]]:
        """Statuses that show SQL, the driver or the database's address."""
        pattern = re.compile(
            rf"psycopg|sqlalchemy|postgresql://|\b(SELECT|INSERT|UPDATE)\b|\b{database_port}\b",
            re.IGNORECASE,
        )
        return [e for e in self.entries if pattern.search(str(e.get("message", "")))]

    def duplicate_request_ids(self) -> dict[str, list[str]]:
        return {k: sorted(ids) for k, ids in self.allocated.items() if len(ids) > 1}


def check_acknowledged(conn: psycopg.Connection[Any], logs: ClientLogs) -> list[dict[str, Any]]:
    """Acknowledged allocations missing or changed in the database."""
    ids = sorted({i for ids in logs.allocated.values() for i in ids})
    rows = {
        r[0]: r
        for r in conn.execute(
            "SELECT a.id, a.tenant, a.request_id, a.state, "
            " EXISTS (SELECT 1 FROM allocation_events e WHERE e.allocation_id = a.id "
            "         AND e.state = 'placed') "
            "FROM allocations a WHERE a.id = ANY(%s)",
            (ids,),
        )
    }
    lost = []
    for key, allocation_ids in logs.allocated.items():
        tenant, _, request_id = key.partition("/")
        for allocation_id in allocation_ids:
            row = rows.get(allocation_id)
            why = ""
            if row is None:
                why = "acknowledged, missing from the database"
            elif (row[1], row[2]) != (tenant, request_id):
                why = f"stored under {row[1]}/{row[2]}"
            elif allocation_id in logs.released_ok and row[3] != "released":
                why = f"release acknowledged, state {row[3]}"
            elif allocation_id not in logs.release_tried and row[3] == "released":
                why = "released though nobody released it"
            elif logs.ack_states.get(allocation_id) == "ALLOCATION_STATE_PLACED" and not row[4]:
                why = "answered PLACED, no placement in its history"
            if why:
                lost.append({"allocation_id": allocation_id, "request": key, "why": why})
    return lost


# Each query returns one row per violation: (gpu id, what).
INVARIANTS = {
    "over_capacity": """
        SELECT g.id, format('claims %s milli / %s MiB of %s MiB', sum(c.milli),
               sum(c.memory_mib), g.memory_mib)
          FROM gpus g JOIN gpu_claims c ON c.gpu_id = g.id
         GROUP BY g.id, g.memory_mib
        HAVING sum(c.milli) > 1000 OR sum(c.memory_mib) > g.memory_mib""",
    "counters_disagree_with_claims": """
        SELECT g.id, format('counters %s/%s/%s, claims %s/%s/%s', g.used_milli,
               g.used_memory_mib, g.mig_used_compute, coalesce(sum(c.milli), 0),
               coalesce(sum(c.memory_mib), 0), coalesce(sum(c.mig_compute), 0))
          FROM gpus g LEFT JOIN gpu_claims c ON c.gpu_id = g.id
         GROUP BY g.id
        HAVING g.used_milli <> coalesce(sum(c.milli), 0)
            OR g.used_memory_mib <> coalesce(sum(c.memory_mib), 0)
            OR g.mig_used_compute <> coalesce(sum(c.mig_compute), 0)""",
    "whole_gpu_shared": """
        SELECT c.gpu_id, format('%s allocations on a whole-claimed GPU',
               count(DISTINCT c.allocation_id))
          FROM gpu_claims c
         WHERE c.gpu_id IN (SELECT w.gpu_id FROM gpu_claims w
                              JOIN allocations a ON a.id = w.allocation_id
                             WHERE a.kind = 'whole')
         GROUP BY c.gpu_id
        HAVING count(DISTINCT c.allocation_id) > 1""",
    "mig_instances_overlap": """
        SELECT a.gpu_id, format('%s [%s+%s) overlaps %s [%s+%s)', a.allocation_id, a.mig_start,
               a.mig_size, b.allocation_id, b.mig_start, b.mig_size)
          FROM gpu_claims a JOIN gpu_claims b
            ON a.gpu_id = b.gpu_id AND a.id < b.id
         WHERE a.mig_start IS NOT NULL AND b.mig_start IS NOT NULL
           AND a.mig_start < b.mig_start + b.mig_size AND b.mig_start < a.mig_start + a.mig_size""",
    "mig_slot_without_its_claim": """
        SELECT s.gpu_id, format('slot %s held by %s', s.slot, s.allocation_id)
          FROM mig_slots s
         WHERE NOT EXISTS (SELECT 1 FROM gpu_claims c
                            WHERE c.gpu_id = s.gpu_id AND c.allocation_id = s.allocation_id
                              AND s.slot >= c.mig_start AND s.slot < c.mig_start + c.mig_size)""",
    "mig_claim_without_its_slots": """
        SELECT c.gpu_id, format('%s [%s+%s) holds %s slots', c.allocation_id, c.mig_start,
               c.mig_size, count(s.slot))
          FROM gpu_claims c LEFT JOIN mig_slots s
            ON s.gpu_id = c.gpu_id AND s.allocation_id = c.allocation_id
           AND s.slot >= c.mig_start AND s.slot < c.mig_start + c.mig_size
         WHERE c.mig_start IS NOT NULL
         GROUP BY c.id, c.gpu_id, c.allocation_id, c.mig_start, c.mig_size
        HAVING count(s.slot) <> c.mig_size""",
}
# Not a double booking, but capacity nobody can use: claims of allocations
# that no longer hold GPUs.
STALE_CLAIMS = """
    SELECT c.gpu_id, format('%s is %s', a.id, a.state)
      FROM gpu_claims c JOIN allocations a ON a.id = c.allocation_id
     WHERE a.state NOT IN ('placed', 'running', 'preempting')"""


def check_gpus(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    """Violations per invariant ('gpu <id>: what'), stale claims included."""
    out: dict[str, list[str]] = {}
    for name, query in [*INVARIANTS.items(), ("stale_claims", STALE_CLAIMS)]:
        out[name] = [f"gpu {gpu}: {what}" for gpu, what in conn.execute(query)]
    return out


def duplicate_rows(conn: psycopg.Connection[Any]) -> int:
    """(tenant, request_id) stored twice (the UNIQUE key should make this 0)."""
    row = conn.execute(
        "SELECT count(*) FROM (SELECT 1 FROM allocations GROUP BY tenant, request_id "
        "HAVING count(*) > 1) d"
    ).fetchone()
    return int(row[0]) if row else 0


def placement_resumed_s(conn: psycopg.Connection[Any], killed_at: float) -> float | None:
    """Seconds from the leader's kill to the first placement of a request that
    had been waiting (only the leader's queue places those)."""
    row = conn.execute(
        "SELECT extract(epoch FROM min(e.at)) FROM allocation_events e "
        " WHERE e.state = 'placed' AND e.at > to_timestamp(%s) "
        "   AND EXISTS (SELECT 1 FROM allocation_events p WHERE p.allocation_id = e.allocation_id "
        "               AND p.state = 'pending' AND p.seq < e.seq)",
        (killed_at,),
    ).fetchone()
    return float(row[0]) - killed_at if row and row[0] is not None else None


def pending_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM allocations WHERE state = 'pending'").fetchone()
    return int(row[0]) if row else 0


# The agents' hellos, recorded by the database itself: every (re)connect
# registers the node again (UPDATE … SET hostname), so a trigger on that
# column stamps each one with the server's clock.
HELLO_TRIGGER = """
CREATE TABLE IF NOT EXISTS chaos_hellos (node text NOT NULL,
                                         at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE OR REPLACE FUNCTION chaos_hello() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO chaos_hellos (node) VALUES (NEW.name); RETURN NULL; END $$;
DROP TRIGGER IF EXISTS chaos_hello ON nodes;
CREATE TRIGGER chaos_hello AFTER INSERT OR UPDATE OF hostname ON nodes
    FOR EACH ROW EXECUTE FUNCTION chaos_hello();
"""


def first_hellos_after(conn: psycopg.Connection[Any], after: float) -> dict[str, float]:
    """node -> seconds from `after` (epoch seconds) to its first hello since."""
    rows = conn.execute(
        "SELECT node, extract(epoch FROM min(at)) FROM chaos_hellos "
        "WHERE at > to_timestamp(%s) GROUP BY node",
        (after,),
    )
    return {node: float(at) - after for node, at in rows}


def requeues(conn: psycopg.Connection[Any]) -> list[tuple[float, str, str]]:
    """Every requeue of the run: (epoch seconds, allocation, why)."""
    rows = conn.execute(
        "SELECT extract(epoch FROM at), allocation_id, message FROM allocation_events "
        "WHERE reason = 'REQUEUED' ORDER BY at"
    )
    return [(float(at), allocation_id, message) for at, allocation_id, message in rows]


def histories(conn: psycopg.Connection[Any], ids: list[str], since: float) -> dict[str, list[str]]:
    """What happened to these allocations since `since`: '+seconds state: message'."""
    out: dict[str, list[str]] = {i: [] for i in ids}
    rows = conn.execute(
        "SELECT allocation_id, extract(epoch FROM at), state, message FROM allocation_events "
        "WHERE allocation_id = ANY(%s) AND at > to_timestamp(%s) ORDER BY allocation_id, seq",
        (ids, since),
    )
    for allocation_id, at, state, message in rows:
        out[allocation_id].append(f"+{float(at) - since:.1f}s {state}: {message[:100]}")
    return out
