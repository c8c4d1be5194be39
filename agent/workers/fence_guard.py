"""The node's fence guard: stops the node's workers when the agent's lease
on them runs out, whatever state the agent itself is in.

The agent fences itself when no replica acknowledges it (agent/runner.py),
but a frozen (SIGSTOP, a hung process) or killed agent cannot; its workers
would run on while the scheduler places the same work elsewhere. So every
node with workers also runs this small process, in its own session, which
does one thing: each time a replica acknowledges the agent, the agent
writes a lease (`<node>-lease.json`: a CLOCK_MONOTONIC deadline, shared by
every process on the host); once the deadline passes, the guard sends
SIGTERM to every worker process group the supervisor recorded
(`<node>-workers.json`) and SIGKILL `kill_after` seconds later. The
deadline is one kill interval after the agent's own fence, so a live agent
stops its workers itself, and the guard acts only for one that cannot.

It exits once no recorded worker has been alive for a while; the supervisor
starts it again with the next worker (`ensure_guard`).

Run: python -m agent.workers.fence_guard --state-dir DIR --node NAME
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from agent.workers.process import start_ticks

log = logging.getLogger("agent.fence_guard")

TICK_S = 0.1
IDLE_EXIT_S = 10.0  # no live worker for this long: nothing to guard


def lease_path(state_dir: Path, node: str) -> Path:
    return state_dir / f"{node}-lease.json"


def workers_path(state_dir: Path, node: str) -> Path:
    return state_dir / f"{node}-workers.json"


def _pid_path(state_dir: Path, node: str) -> Path:
    return state_dir / f"{node}-guard.pid"


def write_lease(state_dir: Path, node: str, fence_at: float, kill_after_s: float) -> None:
    """The guard fences at `fence_at` (time.monotonic()) unless renewed first."""
    path = lease_path(state_dir, node)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"fence_at": fence_at, "kill_after": kill_after_s}))
    temporary.replace(path)


def drop_lease(state_dir: Path, node: str) -> None:
    """No fencing (the scheduler asks for none)."""
    lease_path(state_dir, node).unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _recorded_workers(state_dir: Path, node: str) -> list[tuple[int, int]]:
    """(pid, start ticks) of every recorded worker that is still that process."""
    state = _read_json(workers_path(state_dir, node)) or {}
    found = []
    for gang in state.values():
        for proc in gang.get("procs", []) if isinstance(gang, dict) else []:
            pid, ticks = int(proc["pid"]), int(proc["ticks"])
            if start_ticks(pid) == ticks:
                found.append((pid, ticks))
    return found


def _signal_group(pid: int, ticks: int, signum: int) -> None:
    if start_ticks(pid) == ticks:  # not a recycled pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signum)


def guard(state_dir: Path, node: str) -> None:
    """Watch the lease until nothing is left to guard."""
    fenced_for: float | None = None  # the deadline we fenced at
    terms: dict[tuple[int, int], float] = {}  # worker -> when SIGTERM went
    idle_since = time.monotonic()
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        workers = _recorded_workers(state_dir, node)
        if workers or terms:
            idle_since = now
        elif now - idle_since > IDLE_EXIT_S:
            return
        lease = _read_json(lease_path(state_dir, node))
        if lease is None:
            continue
        fence_at, kill_after = float(lease["fence_at"]), float(lease["kill_after"])
        if now < fence_at:
            fenced_for = None  # renewed: the agent may run work again
            terms.clear()
            continue
        if fenced_for != fence_at:
            fenced_for = fence_at
            log.warning(
                "node %s: the agent's lease ran out %.1fs ago; stopping %d worker(s)",
                node,
                now - fence_at,
                len(workers),
            )
        for worker in workers:
            if worker not in terms:
                terms[worker] = now
                _signal_group(*worker, signal.SIGTERM)
            elif now - terms[worker] > kill_after:
                _signal_group(*worker, signal.SIGKILL)
        for worker in [w for w in terms if start_ticks(w[0]) != w[1]]:
            del terms[worker]


def ensure_guard(state_dir: Path, node: str) -> None:
    """Start the node's guard unless one runs already."""
    pid_file = _pid_path(state_dir, node)
    recorded = _read_json(pid_file)
    if recorded is not None and start_ticks(int(recorded["pid"])) == int(recorded["ticks"]):
        return
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / f"{node}-guard.log").open("ab") as out:
        command = [sys.executable, "-m", "agent.workers.fence_guard"]
        process = subprocess.Popen(
            [*command, "--state-dir", str(state_dir), "--node", node],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the agent, and its signals
        )
    ticks = start_ticks(process.pid) or 0
    pid_file.write_text(json.dumps({"pid": process.pid, "ticks": ticks}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--node", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is for the agent
    guard(args.state_dir, args.node)


if __name__ == "__main__":
    main()
