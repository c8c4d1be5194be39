"""What the chaos run watches while it runs: which allocations have worker
processes alive on which nodes (sampled every half second from the agents'
process records and from /proc), and which replica an agent's TCP
connection goes to."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.workers.process import start_ticks
from bench.support.chaos_cluster import NODE_MARKER, RUN_MARKER, read_environ

SAMPLE_EVERY_S = 0.5


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


def running(pid: int) -> bool:
    """Alive and able to run: not gone, not a zombie, not stopped (SIGSTOP)."""
    return _state(pid) not in ("X", "Z", "T", "t")


@dataclass
class Twice:
    """An allocation seen with live workers on more than one node at once."""

    allocation_id: str
    first_seen: float  # epoch seconds
    last_seen: float
    nodes: list[str]
    pids: dict[str, list[int]]
    samples: int = 1


@dataclass
class WorkerSampler:
    run_id: str
    state_dirs: dict[str, Path]  # node -> agent state dir
    twice: dict[str, Twice] = field(default_factory=dict)
    samples: int = 0
    max_live: int = 0  # most allocations with live workers in one sample
    live: dict[str, set[str]] = field(default_factory=dict)  # the last sample
    history: list[tuple[float, int]] = field(default_factory=list)  # (time, allocations live)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> dict[str, dict[str, list[int]]]:
        """allocation -> node -> pids of running workers, from both sources."""
        seen: dict[str, dict[str, set[int]]] = {}

        def add(allocation_id: str, node: str, pid: int) -> None:
            seen.setdefault(allocation_id, {}).setdefault(node, set()).add(pid)

        for node, directory in self.state_dirs.items():  # the agents' records
            try:
                records = json.loads((directory / f"{node}-workers.json").read_text())
            except (OSError, ValueError):
                continue
            for allocation_id, gang in records.items():
                for proc in gang.get("procs", []):
                    pid = int(proc["pid"])
                    if start_ticks(pid) == int(proc["ticks"]) and running(pid):
                        add(allocation_id, node, pid)
        for entry in os.scandir("/proc"):  # every worker, recorded or not
            if not entry.name.isdigit():
                continue
            env = read_environ(int(entry.name))
            allocation_id = env.get("GPUPOOL_ALLOCATION_ID")
            if env.get(RUN_MARKER) == self.run_id and allocation_id and running(int(entry.name)):
                add(allocation_id, env.get(NODE_MARKER, "?"), int(entry.name))
        return {a: {n: sorted(p) for n, p in nodes.items()} for a, nodes in seen.items()}

    def tick(self) -> None:
        now = time.time()
        seen = self.sample()
        self.samples += 1
        self.max_live = max(self.max_live, len(seen))
        self.live = {a: set(nodes) for a, nodes in seen.items()}
        self.history.append((now, len(seen)))
        for allocation_id, nodes in seen.items():
            if len(nodes) < 2:
                continue
            known = self.twice.get(allocation_id)
            if known is None:
                self.twice[allocation_id] = Twice(allocation_id, now, now, sorted(nodes), nodes)
            else:
                known.last_seen, known.samples = now, known.samples + 1
                known.nodes = sorted(set(known.nodes) | set(nodes))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="worker-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def live_between(self, start: float, end: float) -> list[int]:
        return [n for t, n in self.history if start <= t < end]

    def nodes_with_workers(self) -> dict[str, int]:
        """node -> allocations with live workers there, in the last sample."""
        counts: dict[str, int] = {}
        for nodes in self.live.values():
            for node in nodes:
                counts[node] = counts.get(node, 0) + 1
        return counts


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in os.scandir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(fd.path)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def established_ports(pid: int) -> set[int]:
    """Remote ports of this process's established TCP connections (IPv4 and IPv6)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "01" and fields[9] in inodes:
                ports.add(int(fields[2].rsplit(":", 1)[1], 16))
    return ports


def wait_until(condition: Callable[[], Any], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False
