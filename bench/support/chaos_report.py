"""The chaos run's report: the JSON summary of its checks and one line per
fault (what the clients saw until the next fault, which agents came back
when, what was requeued, what ran twice)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from rich.console import Console

from bench.support.chaos_checks import (
    INVARIANTS,
    ClientLogs,
    check_acknowledged,
    check_gpus,
    duplicate_rows,
    first_hellos_after,
    histories,
    placement_resumed_s,
    requeues,
)
from bench.support.chaos_watch import WorkerSampler

RECONNECT_WINDOW_S = 30.0


@dataclass
class Fault:
    name: str
    at: float  # epoch seconds
    target: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFacts:
    """What the report needs to know of the run."""

    seconds: float
    seed: int
    freeze: str
    started: float  # epoch seconds: the fault clock's zero (end of the warm-up)
    warmup_s: float
    database_port: int
    faults: list[Fault]
    sampler: WorkerSampler


def is_error(entry: dict[str, Any]) -> bool:
    """A watch of a few seconds ends DEADLINE_EXCEEDED by design: that one is no error."""
    return entry["code"] not in ("OK", "DEADLINE_EXCEEDED" if entry["rpc"] == "Watch" else "OK")


def _round(value: float | None) -> float | None:
    if value is None:
        return None
    return value if math.isinf(value) else round(value, 2)


def summarise(
    conn: psycopg.Connection[Any], facts: RunFacts, logs: ClientLogs, console: Console
) -> dict[str, Any]:
    """The checks' figures (the JSON line), printing one line per fault on the way."""
    lost = check_acknowledged(conn, logs)
    gpus = check_gpus(conn)
    duplicates_in_db = duplicate_rows(conn)
    back = reconnects(conn, facts.faults)
    leader_kill = next((f for f in facts.faults if f.name == "leader"), None)
    resumed = placement_resumed_s(conn, leader_kill.at) if leader_kill else None
    moved = requeues(conn)
    fates = {
        f.name: histories(conn, f.detail["running"], f.at)
        for f in facts.faults
        if "running" in f.detail
    }
    double_booked = sum(len(gpus[name]) for name in INVARIANTS)
    duplicates = logs.duplicate_request_ids()
    unknown = logs.unknown()
    times = sorted(t for t in back.values() if t is not None)
    missing = sorted(n for n, t in back.items() if t is None)
    p99 = (
        math.inf
        if missing
        else (times[min(len(times) - 1, int(0.99 * len(times)))] if times else None)
    )
    print_per_fault(console, facts, logs, back, moved)
    baseline = [e for e in logs.entries if e["t"] < facts.started]
    summary = {
        "seconds": facts.seconds,
        "seed": facts.seed,
        "freeze": facts.freeze,
        "acknowledged": sum(len(ids) for ids in logs.allocated.values()),
        "acknowledged_releases": len(logs.released_ok),
        "lost": len(lost),
        "double_booked": double_booked,
        "duplicate_request_ids": len(duplicates) + duplicates_in_db,
        "unknown_status_count": len(unknown),
        "jobs_running_twice": len(facts.sampler.twice),
        "agent_reconnect_p99_s": _round(p99),
        "placement_resumed_s": _round(resumed),
        "baseline_ok_per_s": round(sum(e["code"] == "OK" for e in baseline) / facts.warmup_s, 1),
        "baseline_errors": sum(is_error(e) for e in baseline),
        "codes": dict(sorted(logs.codes.items())),
        "leaky_statuses": len(logs.leaky(facts.database_port)),
        "invariants": {k: len(v) for k, v in gpus.items()},
        "stale_claims": len(gpus["stale_claims"]),
        "reconnect_s": {n: _round(t) for n, t in sorted(back.items())},
        "agents_not_reconnected": missing,
        "worker_samples": facts.sampler.samples,
        "faults": [
            {
                "fault": f.name,
                "t": round(f.at - facts.started, 1),
                "target": f.target,
                **f.detail,
            }
            for f in facts.faults
        ],
        "evidence": {
            "lost": lost[:10],
            "running_twice": [asdict(t) for t in list(facts.sampler.twice.values())[:10]],
            "unknown": unknown[:10],
            "duplicates": dict(list(duplicates.items())[:10]),
            "gpus": {k: v[:5] for k, v in gpus.items() if v},
            "leaky": logs.leaky(facts.database_port)[:5],
            "what_became_of_the_work_on_the_faulty_node": fates,
        },
        "requeues": len(moved),
    }
    return summary


def reconnects(conn: psycopg.Connection[Any], faults: list[Fault]) -> dict[str, float | None]:
    """Per (replica kill, agent on it): seconds until its next hello (None:
    none before the next fault). An agent that was frozen or killed
    itself meanwhile says hello for that reason: it is left out."""
    out: dict[str, float | None] = {}
    for i, fault in enumerate(faults):
        if fault.name not in ("leader", "follower"):
            continue
        later = faults[i + 1 :]
        until = min(
            [
                fault.at + RECONNECT_WINDOW_S,
                *(f.at for f in later if f.name in ("leader", "follower", "postgres")),
            ]
        )
        hellos = {
            n: s for n, s in first_hellos_after(conn, fault.at).items() if fault.at + s < until
        }
        busy = set(fault.detail["agents_under_fault"]) | {
            f.target.split()[-1] for f in later if f.name in ("freeze", "agent") and f.at < until
        }
        for node in set(fault.detail["agents_on_it"]) - busy:
            out[f"{fault.name}:{node}"] = hellos.get(node)
        for node in set(fault.detail["agents_on_both"]) - busy:
            if node in hellos:  # its stream was on the killed replica
                out[f"{fault.name}:{node}"] = hellos[node]
    return out


def print_per_fault(
    console: Console,
    facts: RunFacts,
    logs: ClientLogs,
    back: dict[str, float | None],
    moved: list[tuple[float, str, str]],
) -> None:
    """One line per fault: what the clients saw until the next one, and what moved."""
    edges = [f.at for f in facts.faults] + [math.inf]
    for fault, until in zip(facts.faults, edges[1:], strict=True):
        seen = Counter(
            f"{e['rpc']} {e['code']}"
            for e in logs.entries
            if fault.at <= e["t"] < until and is_error(e)
        )
        # An allocation that ran on the faulty node is that fault's; others go by time.
        owner: dict[str, str] = {}  # the first fault whose node ran it
        for f in facts.faults:
            for a in f.detail.get("running", []):
                owner.setdefault(a, f.name)
        twice = [
            t.allocation_id
            for t in facts.sampler.twice.values()
            if owner.get(t.allocation_id) == fault.name
            or (t.allocation_id not in owner and fault.at <= t.first_seen < until)
        ]
        after = {k.split(":", 1)[1]: v for k, v in back.items() if k.startswith(fault.name + ":")}
        extra = f"; agents back after {after}" if after else ""
        why = Counter(m for t, _, m in moved if fault.at <= t < until)
        fault.detail["requeued"] = dict(why)
        extra += f"; requeued: {dict(why)}" if why else ""
        before = facts.sampler.live_between(fault.at - 1.0, fault.at)
        during = facts.sampler.live_between(fault.at, until)
        fault.detail["live_before"] = before[-1] if before else None
        fault.detail["live_min_after"] = min(during) if during else None
        extra += (
            f"; allocations with live workers {fault.detail['live_before']} before, "
            f"at least {fault.detail['live_min_after']} until the next"
        )
        console.print(
            f"fault {fault.name:<8} at t={fault.at - facts.started:5.1f}s on {fault.target}: "
            f"client errors until the next fault {dict(seen) or 'none'}; "
            f"running twice first seen: {twice or 'none'}{extra}",
            highlight=False,
        )
