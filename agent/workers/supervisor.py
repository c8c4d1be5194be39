"""Supervising the worker gangs of this node.

A gang is this node's part of one allocation's workers. Its ranks live and
die together: when one exits non-zero (or misses its readiness timeout) the
agent stops every local rank and restarts them all after a backoff
(restart policy of the template). A gang spanning several nodes is not
restarted locally: the agent reports RESTARTING, the scheduler bumps the
allocation's worker_generation, and every node restarts its ranks when it
sees the new generation. Once restarts are used up the ranks report FAILED
and the scheduler fails or requeues the allocation (its on_failure policy).

Pids and kernel start times are kept in a state file, so a restarted agent
adopts workers of allocations still desired and stops the others.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agent.nvml import NvmlBackend
from agent.workers import checkpoint
from agent.workers.admission import admit
from agent.workers.env import AgentEnv, HostGpu, Launch, plan_launches
from agent.workers.fence_guard import ensure_guard
from agent.workers.gang import GangSpec, gang_from_allocation
from agent.workers.logs import log_dir, log_path
from agent.workers.mig import MigRealiser
from agent.workers.process import WorkerProcess
from gpupool.v1 import agents_pb2, types_pb2
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.worker_templates import WorkerTemplate

log = logging.getLogger(__name__)

TICK_S = 0.2
ORPHAN_STOP_TIMEOUT_S = 10.0
# A self-fencing node kills its workers this soon: the scheduler moves them
# a node timeout after the fence, and they must be gone by then.
FENCE_KILL_AFTER_S = 2.0
GUARD_CHECK_S = 2.0  # how often a node with workers checks its fence guard runs
W = types_pb2
# What a gang's phase reads as, per rank, to the scheduler.
_PHASE_STATES = {
    "starting": W.WORKER_STATE_STARTING,
    "ready": W.WORKER_STATE_READY,
    "backoff": W.WORKER_STATE_RESTARTING,
    "waiting": W.WORKER_STATE_RESTARTING,
    "failed": W.WORKER_STATE_FAILED,
    "exited": W.WORKER_STATE_EXITED,
    "checkpointing": W.WORKER_STATE_CHECKPOINTING,
    "stopped": W.WORKER_STATE_STOPPED,
}
_STOPPING_STATES = {
    "backoff": W.WORKER_STATE_RESTARTING,
    "waiting": W.WORKER_STATE_RESTARTING,
    "failed": W.WORKER_STATE_RESTARTING,  # FAILED is reported once they are gone
    "stopped": W.WORKER_STATE_CHECKPOINTING,
    "remove": W.WORKER_STATE_STOPPED,
}


@dataclass
class Gang:
    spec: GangSpec
    template: WorkerTemplate
    generation: int
    procs: list[WorkerProcess] = field(default_factory=list)
    phase: str = "starting"
    after_stop: str = ""  # the phase to enter once every process is gone
    restarts: int = 0
    restart_at: float = 0.0
    reason: str = ""
    exit_code: int = 0
    checkpointing: bool = False
    stop_timeout_s: float | None = None  # overrides the template's (self-fencing)


class Supervisor:
    def __init__(
        self,
        node: str,
        state_dir: Path,
        backend: NvmlBackend,
        templates: Mapping[str, WorkerTemplate],
        send: Callable[[agents_pb2.AgentMessage], None],
        ack_preemption: Callable[[str, str], None],
        socket_dir: Path,
        nccl_socket_ifname: str = "",
    ) -> None:
        self._node = node
        self._state_dir = state_dir
        self._backend = backend
        self._templates = dict(templates)
        self._send = send
        self._ack = ack_preemption
        self._env = AgentEnv(node, socket_dir, nccl_socket_ifname)
        self._mig = MigRealiser(backend, node, send)
        self._path = state_dir / f"{node}-workers.json"
        self._lock = threading.RLock()
        self._gangs: dict[str, Gang] = {}
        self.restarts_total = 0  # gangs restarted after a failure (the agent's metrics)
        self._orphans: dict[str, Any] | None = (
            json.loads(self._path.read_text()) if self._path.exists() else {}
        )
        self._leftovers: list[WorkerProcess] = []
        self._guard_checked = -math.inf
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="workers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        """Stop supervising; the workers keep running for the next agent to adopt."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception:  # keep supervising the other gangs
                log.exception("supervising workers failed")

    # -- desired state ------------------------------------------------------------

    def reconcile(self, allocations: Sequence[types_pb2.Allocation]) -> None:
        specs = [gang_from_allocation(a) for a in allocations]
        with self._lock:
            self._adopt_or_kill_orphans({s.allocation_id: s for s in specs})
            wanted = {s.allocation_id for s in specs}
            for allocation_id, gang in list(self._gangs.items()):
                if allocation_id not in wanted:
                    self._begin_stop(gang, "remove", "the allocation is no longer on this node")
            for allocation_id in self._mig.held() - wanted - set(self._gangs):
                self._mig.release(allocation_id)
            for spec in specs:
                self._apply(spec)
            self._save()

    def fence(self, reason: str, kill_after_s: float = FENCE_KILL_AFTER_S) -> None:
        """Stop every gang now (the node lost the scheduler), killing what has
        not exited after kill_after_s: the scheduler moves the work soon. Gangs
        are dropped, not remembered: the next desired state says what to start."""
        with self._lock:
            for gang in self._gangs.values():
                gang.stop_timeout_s = kill_after_s
                self._begin_stop(gang, "remove", reason)
            self._save()

    def _apply(self, spec: GangSpec) -> None:
        gang = self._gangs.get(spec.allocation_id)
        if not spec.template:
            if gang is None and any(b.mig_profile for b in spec.local(self._node)):
                self._mig.realise(spec)  # MIG without workers: the holder runs its own
            return
        if gang is None:
            template = self._templates.get(spec.template)
            if template is None:
                gang = Gang(spec, _missing_template(spec.template), spec.generation)
                self._gangs[spec.allocation_id] = gang
                self._enter(gang, "failed", f"this agent has no worker template {spec.template!r}")
                return
            if not spec.master_port:
                return  # the rendezvous comes with a later desired state
            gang = Gang(spec, template, spec.generation)
            self._gangs[spec.allocation_id] = gang
            self._launch(gang)
            return
        gang.spec = spec
        if spec.generation != gang.generation and gang.phase in ("stopped", "exited", "failed"):
            self._fresh(gang)  # placed again (after a preemption, say): a new run
            return
        if gang.phase == "checkpointing" or gang.after_stop in ("stopped", "failed"):
            return  # once stopped, _finish_stop starts the new generation if any
        if spec.state == "preempting":
            if not gang.checkpointing and gang.phase in ("starting", "ready", "backoff", "waiting"):
                gang.checkpointing = True
                self._enter(gang, "checkpointing", "asked to checkpoint")
                threading.Thread(
                    target=self._checkpoint, args=(gang,), name="checkpoint", daemon=True
                ).start()
            return
        if spec.generation != gang.generation:
            # Another node's rank failed: the whole gang restarts together.
            gang.generation = spec.generation
            if gang.phase == "waiting":
                self._schedule_restart(gang)
            elif gang.phase == "stopping":
                gang.after_stop = "backoff"
            elif gang.phase in ("starting", "ready"):
                gang.restart_at = 0.0
                self._begin_stop(gang, "backoff", "the gang restarts (new generation)")

    # -- processes ----------------------------------------------------------------

    def _launch(self, gang: Gang) -> None:
        spec = gang.spec
        try:
            # Every launch, restarts too: this node's templates (and the
            # symlinks under their roots) are the ones that count.
            admit(self._templates, spec)
        except InvalidArgument as exc:
            log.warning("%s: refused to launch: %s", spec.allocation_id, exc.message)
            self._enter(gang, "failed", f"refused by this node's worker templates: {exc.message}")
            return
        devices = self._mig.realise(spec)
        if devices is None:
            self._enter(gang, "failed", "could not create its MIG instance")
            return
        bindings = tuple(
            replace(b, mig_device_uuid=devices.get(b.rank, b.mig_device_uuid))
            for b in spec.bindings
        )
        spec = gang.spec = replace(spec, bindings=bindings)
        gpus = {
            d.index: HostGpu(d.index, d.memory_mib, tuple(d.nvlink_peers))
            for d in self._backend.devices()
        }
        self._env.socket_dir.mkdir(parents=True, exist_ok=True)
        launches = plan_launches(spec, gang.template, self._env, gpus)
        self._write_rank_index(spec.allocation_id, launches)
        marker = f"start (generation {gang.generation}, restart {gang.restarts})"
        gang.procs = []
        for launch in launches:
            Path(launch.checkpoint_socket).unlink(missing_ok=True)
            path = log_path(self._state_dir, spec.allocation_id, launch.name)
            try:
                gang.procs.append(WorkerProcess.start(launch, path, marker))
            except OSError as exc:
                self._fail_and_maybe_restart(gang, f"cannot start {launch.argv[0]!r}: {exc}", 127)
                return
        log.info("started %d worker(s) of %s", len(gang.procs), spec.allocation_id)
        self._enter(gang, "starting", "started")

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._guard_checked > GUARD_CHECK_S and any(g.procs for g in self._gangs.values()):
            self._guard_checked = now
            ensure_guard(self._state_dir, self._node)  # stops workers if this agent cannot
        with self._lock:
            self._leftovers = [
                p for p in self._leftovers if not p.enforce_stop(ORPHAN_STOP_TIMEOUT_S)
            ]
            for allocation_id, gang in list(self._gangs.items()):
                if gang.phase == "stopping":
                    timeout = gang.stop_timeout_s or gang.template.stop_timeout_s
                    if all([p.enforce_stop(timeout) for p in gang.procs]):
                        self._finish_stop(gang)
                elif gang.phase in ("starting", "ready"):
                    self._watch(gang)
                elif gang.phase == "backoff" and time.monotonic() >= gang.restart_at:
                    self._launch(gang)
                if gang.phase == "removed":
                    del self._gangs[allocation_id]
                    self._mig.release(allocation_id)
            self._save()

    def _watch(self, gang: Gang) -> None:
        codes = [p.poll() for p in gang.procs]
        if gang.procs and all(c == 0 for c in codes):
            self._enter(gang, "exited", "every worker exited with status 0")
            return
        for proc, code in zip(gang.procs, codes, strict=True):
            if code is not None and code != 0:
                ranks = ",".join(map(str, proc.launch.ranks))
                self._fail_and_maybe_restart(gang, f"rank {ranks} exited with {code}", code)
                return
        readiness = gang.template.readiness
        values = {**gang.template.optional_args, **gang.spec.args}
        for proc in gang.procs:
            if proc.overdue(readiness):
                reason = f"not ready after {readiness.timeout_s:g}s ({readiness.kind})"
                self._fail_and_maybe_restart(gang, reason, 0)
                return
        if gang.phase == "starting" and all(p.check_ready(readiness, values) for p in gang.procs):
            self._enter(gang, "ready", "ready")

    def _fail_and_maybe_restart(self, gang: Gang, reason: str, code: int) -> None:
        gang.exit_code = code
        if gang.restarts >= gang.template.restart.max_restarts:
            self._begin_stop(gang, "failed", f"{reason}; restarts used up")
            return
        gang.restarts += 1
        self.restarts_total += 1
        gang.restart_at = 0.0
        multi_node = len(gang.spec.nodes) > 1
        after = "waiting" if multi_node else "backoff"
        log.warning("%s: %s; restart %d", gang.spec.allocation_id, reason, gang.restarts)
        self._begin_stop(gang, after, reason)
        self._report(gang, W.WORKER_STATE_RESTARTING)  # once: the scheduler counts restarts

    def _begin_stop(self, gang: Gang, after: str, reason: str) -> None:
        gang.reason = reason
        if gang.phase == "stopping":
            gang.after_stop = after if gang.after_stop != "remove" else "remove"
            return
        for proc in gang.procs:
            proc.terminate()
        gang.phase, gang.after_stop = "stopping", after

    def _finish_stop(self, gang: Gang) -> None:
        gang.procs = []
        if gang.after_stop == "remove":
            gang.phase = "removed"
        elif gang.after_stop == "backoff":
            self._schedule_restart(gang)
        elif gang.spec.generation != gang.generation and gang.spec.state != "preempting":
            self._fresh(gang)
        else:
            self._enter(gang, gang.after_stop, gang.reason)

    def _fresh(self, gang: Gang) -> None:
        """A new placement of the same allocation: a new run, restarts from zero."""
        gang.generation = gang.spec.generation
        gang.restarts, gang.exit_code, gang.checkpointing = 0, 0, False
        gang.after_stop = ""
        self._launch(gang)

    def _schedule_restart(self, gang: Gang) -> None:
        delay = gang.template.restart.delay(gang.restarts) if gang.restart_at == 0.0 else 0.0
        gang.phase = "backoff"
        gang.restart_at = time.monotonic() + delay

    def _enter(self, gang: Gang, phase: str, reason: str) -> None:
        gang.phase, gang.reason = phase, reason
        self._report(gang, _PHASE_STATES[phase])

    # -- checkpoint on preemption -------------------------------------------------

    def _checkpoint(self, gang: Gang) -> None:
        spec = gang.spec
        with self._lock:
            procs = list(gang.procs)
        uris = checkpoint.ask_workers(procs, spec, gang.template)
        if any(b.rank == 0 for b in spec.local(self._node)):
            # Rank 0's node speaks for the gang: one acknowledgement.
            uri = uris.get(0) or next((u for u in uris.values() if u), "")
            self._ack(spec.allocation_id, uri)
        with self._lock:
            self._begin_stop(gang, "stopped", "preempted: checkpointed and stopped")

    # -- reporting and the state file ---------------------------------------------

    def _report(self, gang: Gang, state: int) -> None:
        self._send(
            agents_pb2.AgentMessage(
                workers=agents_pb2.WorkerReport(workers=self._statuses(gang, state))
            )
        )

    def _statuses(self, gang: Gang, state: int) -> list[types_pb2.WorkerStatus]:
        pids = {r: p.pid for p in gang.procs for r in p.launch.ranks}
        statuses = []
        for binding in gang.spec.local(self._node):
            status = types_pb2.WorkerStatus(
                allocation_id=gang.spec.allocation_id,
                rank=binding.rank,
                node=self._node,
                state=state,  # type: ignore[arg-type]
                pid=pids.get(binding.rank, 0),
                exit_code=gang.exit_code,
                reason=gang.reason,
                restarts=gang.restarts,
            )
            status.updated_at.GetCurrentTime()
            statuses.append(status)
        return statuses

    def statuses(self) -> list[types_pb2.WorkerStatus]:
        """Every local rank's status now (sent with each hello)."""
        with self._lock:
            return [
                s
                for gang in self._gangs.values()
                for s in self._statuses(gang, _reported_state(gang))
            ]

    def _save(self) -> None:
        state = {
            allocation_id: {
                "generation": gang.generation,
                "restarts": gang.restarts,
                "procs": [p.record() for p in gang.procs if p.poll() is None],
            }
            for allocation_id, gang in self._gangs.items()
        }
        self._path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(state))
        temporary.replace(self._path)

    def _write_rank_index(self, allocation_id: str, launches: Sequence[Launch]) -> None:
        directory = log_dir(self._state_dir, allocation_id)
        directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{launch.name} {','.join(map(str, launch.ranks))}" for launch in launches]
        (directory / "ranks.txt").write_text("\n".join(lines) + "\n")

    def _adopt_or_kill_orphans(self, specs: Mapping[str, GangSpec]) -> None:
        """Once, at the first desired state after a start: adopt workers left
        by an earlier agent when their allocation is still desired unchanged."""
        if self._orphans is None:
            return
        orphans, self._orphans = self._orphans, None
        for allocation_id, saved in orphans.items():
            spec = specs.get(allocation_id)
            template = self._templates.get(spec.template) if spec else None
            procs = [_stub_process(record) for record in saved.get("procs", [])]
            alive = [p for p in procs if p is not None]
            if (
                spec is not None
                and template is not None
                and self._admissible(spec)
                and spec.generation == saved.get("generation")
                and alive
                and len(alive) == len(procs)
            ):
                gang = Gang(
                    spec, template, spec.generation, alive, restarts=saved.get("restarts", 0)
                )
                self._gangs[allocation_id] = gang
                log.info("adopted %d running worker(s) of %s", len(alive), allocation_id)
                self._enter(gang, "starting", "adopted after an agent restart")
                continue
            for proc in alive:
                log.info("stopping leftover worker pid %d of %s", proc.pid, allocation_id)
                proc.terminate()
                self._leftovers.append(proc)

    def _admissible(self, spec: GangSpec) -> bool:
        try:
            admit(self._templates, spec)
        except InvalidArgument as exc:
            log.warning("%s: not adopting its workers: %s", spec.allocation_id, exc.message)
            return False
        return True


def _reported_state(gang: Gang) -> int:
    if gang.phase in _PHASE_STATES:
        return _PHASE_STATES[gang.phase]
    return _STOPPING_STATES.get(gang.after_stop, W.WORKER_STATE_UNSPECIFIED)


def _stub_process(record: dict[str, Any]) -> WorkerProcess | None:
    ranks = tuple(int(r) for r in record.get("ranks", ()))
    launch = Launch("", ranks, (), {}, str(record.get("socket", "")))
    return WorkerProcess.adopt(launch, record)


def _missing_template(name: str) -> WorkerTemplate:
    return WorkerTemplate(name=name, command=("false",))
