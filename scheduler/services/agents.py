"""Connected node agents: their hello, heartbeats and health, and the desired
state pushed to them (DESIGN.md principle 3, level-triggered).

Each connected agent has a session with an outbound queue; the API layer
drains it onto the agent's stream. Whenever allocations on a node change,
the node's full desired state is queued again: an agent never needs a delta
it might have missed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from scheduler.domain.clock import Clock
from scheduler.domain.errors import FailedPrecondition, GpupoolError, InvalidArgument, quoted
from scheduler.domain.faults import check_fault_command
from scheduler.domain.node_reports import (
    GpuHealthReport,
    GpuSpecInput,
    validate_health,
    validate_hello_extras,
    validate_node_name,
    validate_registration,
    validate_residency_bounds,
)
from scheduler.domain.residency import ResidentModel, validate_residency
from scheduler.logs import node_changed
from scheduler.services.fleet import FleetService
from scheduler.services.health import HealthService
from scheduler.services.model_residency import ModelService
from scheduler.store import fleet as fleet_store
from scheduler.store import liveness
from scheduler.store.records import AllocationRecord

log = logging.getLogger(__name__)

NODE_STATE_CACHE_S = 30.0


@dataclass(frozen=True)
class WorkerReport:
    """One rank's worker as its agent reports it."""

    allocation_id: str
    rank: int
    node: str
    state: str  # starting | ready | restarting | exited | failed | stopped | checkpointing
    pid: int = 0
    exit_code: int = 0
    reason: str = ""
    restarts: int = 0


@dataclass(frozen=True)
class AgentHello:
    node: str
    hostname: str
    labels: dict[str, str]
    gpus: list[GpuSpecInput]
    health: list[GpuHealthReport]
    running_allocation_ids: tuple[str, ...] = ()
    agent_version: str = ""
    simulated: bool = False
    # Where models are warm on the node: always the full set in a hello.
    residency: tuple[ResidentModel, ...] = ()
    workers: tuple[WorkerReport, ...] = ()


@dataclass(frozen=True)
class DesiredState:
    node: str
    node_state: str
    allocations: tuple[AllocationRecord, ...]
    heartbeat_interval_ms: int
    self_fence_after_ms: int = 0
    self_fence_kill_after_ms: int = 0


@dataclass(frozen=True)
class HeartbeatAck:
    """The node's heartbeat `seq` (and those before it) is in the database."""

    seq: int


@dataclass(frozen=True)
class FaultCommand:
    gpu_index: int
    fault: str
    clear: bool


@dataclass(frozen=True)
class LogRequest:
    """Ask an agent to stream a worker's log back (or stop a follow: cancel)."""

    request_id: str
    allocation_id: str
    rank: int
    tail_bytes: int = 0
    follow: bool = False
    cancel: bool = False


OutboundMessage = DesiredState | FaultCommand | LogRequest | HeartbeatAck


@dataclass
class AgentSession:
    node: str
    simulated: bool
    outbound: queue.Queue[OutboundMessage | None] = field(default_factory=queue.Queue)
    last_health: dict[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    # Each GPU's memory as the hello registered it, to bound heartbeats' used figures.
    gpu_memory_mib: dict[str, int] = field(default_factory=dict)
    closed: bool = False
    # Where pushed messages go instead of `outbound`, called from any thread
    # (an aio stream hands them to its event loop); None marks the end.
    sink: Callable[[OutboundMessage | None], None] | None = None

    def push(self, message: OutboundMessage) -> None:
        if not self.closed:
            (self.sink or self.outbound.put)(message)

    def close(self) -> None:
        self.closed = True
        (self.sink or self.outbound.put)(None)

    def messages(self, poll_seconds: float = 1.0) -> Iterator[OutboundMessage]:
        """Outbound messages until the session closes."""
        while not self.closed:
            try:
                message = self.outbound.get(timeout=poll_seconds)
            except queue.Empty:
                continue
            if message is None:
                return
            yield message


class CommandDelivery(Protocol):
    def deliver(self, node: str, command: FaultCommand | LogRequest) -> None: ...


class _LocalOnly:
    """Delivery to agents streaming to this replica only (before wiring)."""

    def __init__(self, hub: AgentHub) -> None:
        self._hub = hub

    def deliver(self, node: str, command: FaultCommand | LogRequest) -> None:
        session = self._hub.session_for(node)
        if session is None:
            raise FailedPrecondition(f"node {quoted(node)} has no agent connected here")
        session.push(command)


class HeartbeatRecorder:
    """Collects heartbeats in memory and writes them in one statement per
    flush, so a thousand agents cost one UPDATE a second, not a thousand."""

    def __init__(self, engine: Engine, fleet: FleetService) -> None:
        self._engine = engine
        self._fleet = fleet
        self._lock = threading.Lock()
        self._beats: dict[str, tuple[datetime, int]] = {}
        # Told which heartbeat of each node was just stored: its agent gets an
        # acknowledgement, which is what keeps it from fencing itself.
        self.on_stored: Callable[[dict[str, int]], None] = lambda stored: None

    def record(self, node: str, at: datetime, seq: int = 0) -> None:
        with self._lock:
            self._beats[node] = (at, seq)

    def run_once(self) -> list[str]:
        """Flush; returns nodes that were unreachable and are back."""
        with self._lock:
            beats, self._beats = self._beats, {}
        if not beats:
            return []
        try:
            with self._engine.begin() as conn:
                returned = liveness.record_heartbeats(
                    conn, {node: at for node, (at, _) in beats.items()}
                )
        except DBAPIError as exc:
            with self._lock:  # keep the newest beat of each node for the next flush
                self._beats = {**beats, **self._beats}
            log.warning("heartbeats not stored: database unavailable (%s)", type(exc).__name__)
            return []
        self.on_stored({node: seq for node, (_, seq) in beats.items() if seq})
        if returned:
            for node in returned:
                node_changed(node, "unreachable", "reachable", "heartbeat")
            self._fleet.fleet_changed(returned)
        return returned


class AgentHub:
    def __init__(
        self,
        engine: Engine,
        fleet: FleetService,
        health: HealthService,
        heartbeats: HeartbeatRecorder,
        clock: Clock,
        heartbeat_interval_s: float,
        models: ModelService,
        self_fence_after_s: float = 0.0,
        self_fence_kill_after_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._fence_after_ms = int(self_fence_after_s * 1000)
        self._fence_kill_after_ms = int(self_fence_kill_after_s * 1000)
        self._fleet = fleet
        self._models = models
        self._health = health
        self._heartbeats = heartbeats
        self._clock = clock
        self._interval_ms = int(heartbeat_interval_s * 1000)
        self._lock = threading.Lock()
        self._sessions: dict[str, AgentSession] = {}
        # For unary heartbeats: every node's state, read at once at most every
        # NODE_STATE_CACHE_S (one query per interval, not one per node).
        self._unary_states: dict[str, str] = {}
        self._unary_states_at = -float("inf")
        self._unary_states_lock = threading.Lock()
        self._unary_sessions: dict[str, AgentSession] = {}
        # Desired-state pushes run on their own thread: the allocator that
        # reports changed nodes must not wait on these reads.
        self._changed: set[str] = set()
        self._changed_cond = threading.Condition()
        self._stopped = False
        self._pusher = threading.Thread(target=self._push_loop, name="desired-state", daemon=True)
        # Health changes are applied on their own thread too: moving work off a
        # failed GPU takes a while, and the stream reader must keep reading
        # heartbeats meanwhile, or a busy scheduler would see a silent node.
        self._health_queue: queue.Queue[tuple[str, list[GpuHealthReport]] | None] = queue.Queue()
        self._health_worker = threading.Thread(
            target=self._health_loop, name="gpu-health", daemon=True
        )
        # Delivers a command to whichever replica holds the agent (set at wiring).
        self.relay: CommandDelivery = _LocalOnly(self)
        # Completes the desired rows before they are sent (the worker service
        # hands out rendezvous ports here); identity until wired.
        self.prepare_allocations: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] = (
            lambda rows: rows
        )
        # Engine metrics an agent scraped on its node: (node, samples); wired
        # to DeploymentService.record_metrics (issue 13); dropped until then.
        self.engine_metrics: Callable[[str, list[Any]], object] = lambda node, samples: None

    def start(self) -> None:
        self._pusher.start()
        self._health_worker.start()

    def _health_loop(self) -> None:
        while (item := self._health_queue.get()) is not None:
            node, reports = item
            try:
                self._health.apply(node, reports)
            except Exception:  # keep applying later reports
                log.exception("applying health of %s failed", node)

    def nodes_changed(self, nodes: Iterable[str]) -> None:
        with self._lock:
            connected = {n for n in nodes if n in self._sessions}
        if not connected:
            return
        with self._changed_cond:
            self._changed |= connected
            self._changed_cond.notify()

    def _push_loop(self) -> None:
        while True:
            with self._changed_cond:
                self._changed_cond.wait_for(lambda: self._stopped or bool(self._changed))
                if self._stopped:
                    return
                nodes, self._changed = self._changed, set()
            try:
                self.push_desired(nodes)
            except Exception:  # a failed read must not end pushes for good
                log.exception("pushing desired state to %s failed", sorted(nodes))

    def connect(
        self,
        hello: AgentHello,
        sink: Callable[[OutboundMessage | None], None] | None = None,
    ) -> AgentSession:
        """Register what the agent observes and queue the full desired state
        (on the session's queue, or into `sink`).

        The whole hello is checked first: InvalidArgument, and nothing stored,
        for any part of it that cannot be right.
        """
        gpus = validate_registration(hello.node, hello.hostname, hello.labels, hello.gpus)
        memory = {g.uuid: g.memory_mib for g in gpus}
        validate_health(hello.node, hello.health, memory)
        validate_residency_bounds(hello.node, hello.residency)
        validate_residency(hello.node, hello.residency, memory.keys())
        validate_hello_extras(hello.node, hello.agent_version, hello.running_allocation_ids)
        self._fleet.register_node(hello.node, hello.hostname, hello.labels, hello.gpus)
        with self._engine.begin() as conn:
            info = {"version": hello.agent_version, "simulated": hello.simulated}
            liveness.set_agent_info(conn, hello.node, info)
        self._models.report_residency(hello.node, hello.residency)
        session = AgentSession(hello.node, hello.simulated, gpu_memory_mib=memory, sink=sink)
        with self._lock:
            previous = self._sessions.get(hello.node)
            self._sessions[hello.node] = session
        if previous is not None:
            previous.close()  # the agent reconnected; its old stream is dead
        self.report_health(session, hello.health)
        desired = self.desired_state(hello.node)
        stale = set(hello.running_allocation_ids) - {a.id for a in desired.allocations}
        if stale:
            log.info(
                "%s runs stale allocations %s; the desired state drops them",
                hello.node,
                sorted(stale),
            )
        session.push(desired)
        return session

    def disconnect(self, session: AgentSession) -> None:
        session.close()
        with self._lock:
            if self._sessions.get(session.node) is session:
                del self._sessions[session.node]

    def heartbeat(
        self,
        session: AgentSession,
        reports: list[GpuHealthReport],
        residency: Sequence[ResidentModel] | None = None,
        seq: int = 0,
    ) -> None:
        """residency: None when the agent did not report it (unchanged since it last did);
        seq: the stream's heartbeat number, acknowledged once stored.

        Health that cannot be right is InvalidArgument, and the heartbeat
        changes nothing; a bad residency report is logged and left out.
        """
        validate_health(session.node, reports, session.gpu_memory_mib)
        self._heartbeats.record(session.node, self._clock.now(), seq)
        self.report_health(session, reports)
        if residency is not None:
            try:
                validate_residency_bounds(session.node, residency)
                self._models.report_residency(session.node, residency)
            except GpupoolError as exc:  # a bad report must not end the agent's stream
                log.warning("%s: residency report rejected: %s", session.node, exc)

    def unary_heartbeat(
        self,
        node: str,
        reports: list[GpuHealthReport],
        residency: Sequence[ResidentModel] | None = None,
    ) -> str:
        """Agents.Heartbeat for callers without a stream: batched like stream
        heartbeats; returns the node's state (ready, cordoned, draining) as of
        at most a few seconds ago. InvalidArgument, changing nothing, for a
        report that cannot be right."""
        validate_node_name(node)
        validate_health(node, reports)
        if residency is not None:
            validate_residency_bounds(node, residency)
        state = self._unary_node_state(node)
        self._heartbeats.record(node, self._clock.now())
        session = self._unary_sessions.setdefault(node, AgentSession(node, simulated=False))
        self.report_health(session, reports)
        if residency is not None:
            self._models.report_residency(node, residency)
        return {"active": "ready"}.get(state, state)

    def _unary_node_state(self, node: str) -> str:
        """The node's admin state as of at most NODE_STATE_CACHE_S ago; NotFound
        for a node never registered. One thread reads for all; the rest wait."""
        with self._unary_states_lock:
            if time.monotonic() - self._unary_states_at > NODE_STATE_CACHE_S:
                with self._engine.connect() as conn:
                    self._unary_states = fleet_store.node_admin_states(conn)
                self._unary_states_at = time.monotonic()
            state = self._unary_states.get(node)
            if state is None:  # registered since the last read (or never)
                with self._engine.connect() as conn:
                    state = self._unary_states[node] = fleet_store.node_admin_state(conn, node)
            return state

    def report_health(self, session: AgentSession, reports: list[GpuHealthReport]) -> None:
        changed = [r for r in reports if session.last_health.get(r.uuid) != (r.health, r.reasons)]
        if not changed:
            return
        for report in changed:
            session.last_health[report.uuid] = (report.health, report.reasons)
        self._health_queue.put((session.node, changed))

    def observed(self, session: AgentSession, running: Iterable[str]) -> None:
        desired = {a.id for a in self.desired_state(session.node).allocations}
        stale = set(running) - desired
        if stale:
            session.push(self.desired_state(session.node))

    def desired_state(self, node: str) -> DesiredState:
        with self._engine.connect() as conn:
            record = fleet_store.get_node(conn, node)
            rows = liveness.active_allocations_on_node(conn, node)
        rows = self.prepare_allocations(rows)
        return DesiredState(
            node=node,
            node_state=record.state,
            allocations=tuple(AllocationRecord.from_mapping(r) for r in rows),
            heartbeat_interval_ms=self._interval_ms,
            self_fence_after_ms=self._fence_after_ms,
            self_fence_kill_after_ms=self._fence_kill_after_ms,
        )

    def acknowledge(self, stored: dict[str, int]) -> None:
        """These heartbeats are stored: tell the agents streaming here."""
        with self._lock:
            sessions = [
                (self._sessions[n], seq) for n, seq in stored.items() if n in self._sessions
            ]
        for session, seq in sessions:
            session.push(HeartbeatAck(seq))

    def push_desired(self, nodes: Iterable[str]) -> None:
        """Queue a fresh desired state for each of these nodes connected here."""
        with self._lock:
            sessions = [self._sessions[n] for n in set(nodes) if n in self._sessions]
        for session in sessions:
            session.push(self.desired_state(session.node))

    def inject_fault(self, node: str, gpu_index: int, fault: str, clear: bool) -> None:
        """Relay a fault to a simulated agent; InvalidArgument for a fault it would
        reject or a GPU index the node does not have."""
        if not fault and not clear:
            raise InvalidArgument("name a fault, e.g. xid=79, temperature=95, ecc=2 or lost")
        try:
            check_fault_command(fault, clear)
        except ValueError as error:
            raise InvalidArgument(str(error)) from None
        with self._engine.connect() as conn:
            record = fleet_store.get_node(conn, node)  # NotFound: no such node
        if not record.agent_info.get("simulated", False):
            raise FailedPrecondition(
                f"node {quoted(node)} runs the real NVML backend; "
                "faults go only to simulated agents"
            )
        indexes = sorted(gpu.index for gpu in record.gpus)
        if gpu_index not in indexes:
            known = ", ".join(map(str, indexes)) or "none"
            raise InvalidArgument(f"node {node} has no GPU {gpu_index} (GPUs: {known})")
        # Here, or through the replica that holds the agent's stream.
        self.relay.deliver(node, FaultCommand(gpu_index, fault, clear))

    def session_for(self, node: str) -> AgentSession | None:
        """The live stream of this node's agent, if it is connected here."""
        with self._lock:
            return self._sessions.get(node)

    def connected_nodes(self) -> list[str]:
        with self._lock:
            return sorted(self._sessions)

    def close_all(self) -> None:
        self._health_queue.put(None)
        with self._changed_cond:
            self._stopped = True
            self._changed_cond.notify()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()
