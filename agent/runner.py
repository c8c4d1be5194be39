"""The node agent: discovers its GPUs, holds one stream to the scheduler, and
keeps the node's observed state in line with the desired state it receives.

The agent dials out (no inbound port on GPU hosts). Every (re)connect opens
with a hello carrying the full observed state and gets the full desired
state back; after that it sends heartbeats with health every interval.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from agent.connection import AGENT_CHANNEL_OPTIONS, scheduler_target, server_name
from agent.engine_metrics import EngineScraper
from agent.health import HealthThresholds, XidMemory, evaluate
from agent.nvml import NvmlBackend, XidEvent
from agent.residency import (
    ResidencyFromFleetFile,
    ResidencyFromJsonFile,
    ResidencyTracker,
)
from agent.workers.fence_guard import drop_lease, write_lease
from agent.workers.logs import LogServer
from agent.workers.supervisor import FENCE_KILL_AFTER_S, Supervisor
from gpupool.v1 import agents_pb2, agents_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler.domain.residency import ResidentModel
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE, load_templates
from scheduler.fleetfile import SimulatedNode
from scheduler.security.channels import ClientCredentials, open_channel

log = logging.getLogger(__name__)

AGENT_VERSION = "0.1.0"
_HEALTH = {
    "healthy": types_pb2.GPU_HEALTH_HEALTHY,
    "degraded": types_pb2.GPU_HEALTH_DEGRADED,
    "unhealthy": types_pb2.GPU_HEALTH_UNHEALTHY,
}
_TIERS = {
    "gpu": types_pb2.RESIDENCY_TIER_GPU,
    "host_ram": types_pb2.RESIDENCY_TIER_HOST_RAM,
    "local_disk": types_pb2.RESIDENCY_TIER_LOCAL_DISK,
}


@dataclass
class AgentSettings:
    # The scheduler replicas' agent ports (mutual TLS): see agent/connection.py.
    scheduler: str
    node_name: str
    # The CA to trust and this node's client certificate (it names the node).
    credentials: ClientCredentials
    hostname: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state_dir: Path = Path(".gpupool/agent")
    heartbeat_interval_s: float = 2.0  # until the scheduler says otherwise
    max_backoff_s: float = 10.0
    thresholds: HealthThresholds = field(default_factory=HealthThresholds)
    worker_templates_file: Path = DEFAULT_TEMPLATES_FILE
    nccl_socket_ifname: str = ""  # NCCL picks an interface unless this is set

    @property
    def socket_dir(self) -> Path:
        """Checkpoint sockets: a short path (UNIX socket paths stop at 107 bytes)."""
        key = f"{self.state_dir.resolve()}/{self.node_name}".encode()
        return Path(tempfile.gettempdir()) / f"gpupool-{hashlib.sha1(key).hexdigest()[:12]}"


class RunningAllocations:
    """The allocations this node runs work for, kept on disk so that a
    restarted agent knows what it left running and can reconcile."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.ids: set[str] = set()
        if path.exists():
            self.ids = set(json.loads(path.read_text()).get("running", []))

    def replace(self, ids: set[str]) -> set[str]:
        """Adopt the desired set; returns the stale ids that were stopped."""
        stale = self.ids - ids
        started = ids - self.ids
        for allocation_id in sorted(stale):
            log.info("stopping stale allocation %s", allocation_id)
        for allocation_id in sorted(started):
            log.info("running allocation %s", allocation_id)
        self.ids = set(ids)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps({"running": sorted(self.ids)}))
        return stale


def default_residency(backend: NvmlBackend, state_dir: Path) -> ResidencyTracker:
    """A simulated node reports its fleet file's models and those of the work it
    runs; a real one what its workers write to <state_dir>/residency.json."""
    node = getattr(backend, "node", None)
    if isinstance(node, SimulatedNode):
        return ResidencyTracker(ResidencyFromFleetFile(node), track_allocations=True)
    return ResidencyTracker(ResidencyFromJsonFile(state_dir / "residency.json"), False)


class Agent:
    def __init__(
        self,
        settings: AgentSettings,
        backend: NvmlBackend,
        residency: ResidencyTracker | None = None,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.residency = residency or default_residency(backend, settings.state_dir)
        self.running = RunningAllocations(settings.state_dir / f"{settings.node_name}.json")
        self.node_state = "unknown"
        self._target = scheduler_target(settings.scheduler)
        credentials = settings.credentials
        if not credentials.insecure and not credentials.server_name:
            # A list of addresses: check each replica against the host they share.
            name = server_name(self._target)
            if name:
                credentials = replace(credentials, server_name=name)
        self._credentials = credentials
        self._interval = settings.heartbeat_interval_s
        # Self-fencing: the last time a replica told us our heartbeats are
        # stored (an acknowledgement or a desired state), and how long we may
        # go without before stopping our workers (the scheduler says; 0: never).
        self._last_contact = time.monotonic()
        self._fence_after_s = 0.0
        self._fence_kill_after_s = FENCE_KILL_AFTER_S
        self.fenced = False
        self._seq = 0
        self._sent_at: dict[int, float] = {}  # heartbeat seq -> when sent (monotonic)
        # While fenced, a desired state waits for an acknowledgement: only a
        # replica that stores our heartbeats may have us start work again.
        self._held_desired: agents_pb2.DesiredState | None = None
        self._hello_sent: float | None = None
        self._xids = XidMemory(settings.thresholds.xid_memory_s)
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._outbound: queue.Queue[agents_pb2.AgentMessage] | None = None
        self.supervisor = Supervisor(
            settings.node_name,
            settings.state_dir,
            backend,
            load_templates(settings.worker_templates_file),
            self.send,
            self.ack_preemption,
            settings.socket_dir,
            settings.nccl_socket_ifname,
        )
        self.logs = LogServer(settings.state_dir, self.send)
        self.engines = EngineScraper(settings.node_name, self.send, settings.heartbeat_interval_s)

    def send(self, message: agents_pb2.AgentMessage) -> None:
        """Queue a message on the current stream; dropped while disconnected
        (the next hello carries the full worker state again)."""
        outbound = self._outbound
        if outbound is not None:
            outbound.put(message)

    def _channel(self) -> grpc.Channel:
        return open_channel(self._target, self._credentials, AGENT_CHANNEL_OPTIONS)

    def ack_preemption(self, allocation_id: str, checkpoint_uri: str) -> None:
        with self._channel() as channel:
            stub = scheduler_pb2_grpc.SchedulerStub(channel)  # type: ignore[no-untyped-call]
            request = scheduler_pb2.AckPreemptionRequest(
                allocation_id=allocation_id, checkpoint_uri=checkpoint_uri
            )
            try:
                stub.AckPreemption(request, timeout=10)
                log.info("acknowledged preemption of %s (%s)", allocation_id, checkpoint_uri)
            except grpc.RpcError as exc:
                log.warning("acknowledging preemption of %s: %s", allocation_id, exc)

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Connect, and reconnect with jittered exponential backoff, until stopped."""
        backoff = 0.5
        self.supervisor.start()
        fencing = threading.Thread(target=self._fence_when_cut_off, name="fence", daemon=True)
        fencing.start()
        self.engines.start()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
            except grpc.RpcError as exc:
                log.warning("scheduler stream ended: %s", exc.code())
            except Exception:  # a bug must not end the agent: it keeps its node's work
                log.exception("the scheduler stream failed; reconnecting")
            finally:
                self.connected.clear()
            if time.monotonic() - started > 30:
                backoff = 0.5  # the last session was healthy; start over
            self._stop.wait(random.uniform(0, backoff))  # full jitter
            # Never longer than a heartbeat interval between tries: a new
            # leader judges silence a whole timeout (several intervals) after it
            # takes over, so an agent retrying this often is back in time.
            backoff = min(backoff * 2, self.settings.max_backoff_s, max(self._interval, 0.5))
        self.supervisor.close()  # workers keep running: the next agent adopts them
        self.engines.stop()
        self.logs.stop_all()

    def _session(self) -> None:
        with self._channel() as channel:
            stub = agents_pb2_grpc.AgentsStub(channel)
            outbound: queue.Queue[agents_pb2.AgentMessage] = queue.Queue()
            outbound.put(agents_pb2.AgentMessage(hello=self.hello()))
            # The desired state answering the hello acknowledges it: the hello
            # stored a heartbeat (registration), no earlier than now.
            self._hello_sent = time.monotonic()
            self._outbound = outbound
            ended = threading.Event()
            try:
                responses = stub.Connect(self._messages(outbound))
                watchdog = threading.Thread(
                    target=self._watch_session, args=(responses, ended), daemon=True
                )
                watchdog.start()
                for message in responses:
                    self.connected.set()
                    self._handle(message, outbound)
            finally:
                ended.set()
                self._outbound = None

    def _watch_session(self, call: grpc.RpcContext, ended: threading.Event) -> None:
        """Cancel the stream when stopping, or when its replica has gone quiet
        (no acknowledgement for several heartbeats): then reconnect, to
        whichever replica answers."""
        quiet_after = max(3 * self._interval, 3.0)
        started = time.monotonic()
        while not ended.wait(0.25):
            if self._stop.is_set():
                break
            if time.monotonic() - max(self._last_contact, started) > quiet_after:
                log.warning("no acknowledgement for %.0fs: reconnecting", quiet_after)
                break
        call.cancel()  # type: ignore[no-untyped-call]

    def _acknowledged(self, seq: int) -> None:
        sent = self._sent_at.get(seq)
        if sent is None:
            return  # from an earlier stream, or unknown: proves nothing
        for old in [s for s in self._sent_at if s <= seq]:
            del self._sent_at[old]
        self._contact(sent)

    def _contact(self, sent: float) -> None:
        """A replica stored what we sent at `sent` (monotonic)."""
        self._last_contact = max(self._last_contact, sent)
        if self._fence_after_s:
            # The node's fence guard stops the workers one kill interval after
            # we would: it acts only if this process is frozen or dead.
            fence_at = self._last_contact + self._fence_after_s + self._fence_kill_after_s
            write_lease(
                self.settings.state_dir, self.settings.node_name, fence_at, self._fence_kill_after_s
            )
        if self.fenced:
            log.info("a scheduler replica answers again: this node may run work again")
            self.fenced = False
            held, self._held_desired = self._held_desired, None
            if held is not None:
                self.supervisor.reconcile(held.allocations)

    def _fence_when_cut_off(self) -> None:
        """Stop this node's workers once no replica has acknowledged it for the
        scheduler's self-fence interval: by then the scheduler may be about to
        place the work elsewhere, and a job must never run on two nodes."""
        while not self._stop.wait(0.25):
            after = self._fence_after_s
            silent = time.monotonic() - self._last_contact
            if after and not self.fenced and silent > after:
                log.warning(
                    "cut off from every scheduler replica for %.0fs: stopping this node's "
                    "workers (self-fencing); they start again when a replica answers",
                    silent,
                )
                self.fenced = True
                self.supervisor.fence(
                    "the node lost the scheduler (self-fencing)", self._fence_kill_after_s
                )

    def _messages(
        self, outbound: queue.Queue[agents_pb2.AgentMessage]
    ) -> Iterator[agents_pb2.AgentMessage]:
        """What the agent sends: queued messages, and a heartbeat every interval."""
        last_beat = time.monotonic()
        while not self._stop.is_set():
            # The interval the scheduler asked for counts from the last beat at once.
            wait = last_beat + self._interval - time.monotonic()
            try:
                yield outbound.get(timeout=max(0.0, min(wait, 0.5)))
                continue
            except queue.Empty:
                if time.monotonic() < last_beat + self._interval:
                    continue
            last_beat = time.monotonic()
            beat = self.heartbeat()
            self._seq += 1
            beat.seq = self._seq
            self._sent_at[self._seq] = time.monotonic()
            if len(self._sent_at) > 64:  # unacknowledged for long: keep the newest
                del self._sent_at[min(self._sent_at)]
            yield agents_pb2.AgentMessage(heartbeat=beat)

    def _handle(
        self, message: agents_pb2.SchedulerMessage, outbound: queue.Queue[agents_pb2.AgentMessage]
    ) -> None:
        body = message.WhichOneof("body")
        if body == "heartbeat_ack":
            self._acknowledged(message.heartbeat_ack.seq)
        elif body == "desired":
            desired = message.desired
            self._fence_after_s = desired.self_fence_after_ms / 1000
            if desired.self_fence_kill_after_ms:
                self._fence_kill_after_s = desired.self_fence_kill_after_ms / 1000
            if not self._fence_after_s:
                drop_lease(self.settings.state_dir, self.settings.node_name)
            hello_sent, self._hello_sent = self._hello_sent, None
            if hello_sent is not None:
                self._contact(hello_sent)
            if desired.heartbeat_interval_ms:
                self._interval = desired.heartbeat_interval_ms / 1000
            self.node_state = types_pb2.NodeState.Name(desired.node_state)
            stale = self.running.replace({a.id for a in desired.allocations})
            self.residency.observe_allocations(
                {
                    a.id: (a.model, [b.gpu_uuid for b in a.bindings if b.gpu_uuid])
                    for a in desired.allocations
                }
            )
            if stale:
                observed = agents_pb2.ObservedAllocations(
                    running_allocation_ids=sorted(self.running.ids)
                )
                outbound.put(agents_pb2.AgentMessage(observed=observed))
            if self.fenced:
                self._held_desired = desired
            else:
                self.supervisor.reconcile(desired.allocations)
            self.engines.observe(desired.allocations)
        elif body == "log_request":
            self.logs.handle(message.log_request)
        elif body == "fault":
            self._apply_fault(message.fault)

    def _apply_fault(self, command: agents_pb2.FaultCommand) -> None:
        inject = getattr(self.backend, "inject", None)
        clear = getattr(self.backend, "clear", None)
        if inject is None or clear is None:
            log.warning("ignoring a fault command: this agent runs real hardware")
            return
        try:
            if command.clear:
                clear(command.gpu_index, command.fault)
                devices = self.backend.devices()
                if command.gpu_index < len(devices):
                    self._xids.clear(devices[command.gpu_index].uuid)
            else:
                inject(command.gpu_index, command.fault)
            log.info(
                "fault %s on GPU %d: %s",
                "cleared" if command.clear else "injected",
                command.gpu_index,
                command.fault or "all",
            )
        except ValueError as exc:
            log.warning("bad fault command: %s", exc)

    def hello(self) -> agents_pb2.AgentHello:
        devices = self.backend.devices()
        node = agents_pb2.RegisterNodeRequest(
            name=self.settings.node_name,
            hostname=self.settings.hostname or self.settings.node_name,
            labels=self.settings.labels,
            gpus=[
                types_pb2.GpuSpec(
                    uuid=d.uuid,
                    index=d.index,
                    model=d.model or d.name,
                    memory_mib=d.memory_mib,
                    mig_enabled=d.mig_enabled,
                    nvlink_peers=d.nvlink_peers,
                    pci_bus_id=d.pci_bus_id,
                )
                for d in devices
            ],
        )
        return agents_pb2.AgentHello(
            node=node,
            health=self.health_reports(),
            running_allocation_ids=sorted(self.running.ids),
            agent_version=AGENT_VERSION,
            simulated=bool(getattr(self.backend, "simulated", False)),
            residency=residency_messages(self.residency.for_hello(self._uuid_by_index())),
            workers=self.supervisor.statuses(),
        )

    def heartbeat(self) -> agents_pb2.HeartbeatRequest:
        request = agents_pb2.HeartbeatRequest(
            node=self.settings.node_name, health=self.health_reports()
        )
        # Residency only when it changed: the scheduler keeps the last report.
        changed = self.residency.changed(self._uuid_by_index())
        if changed is not None:
            request.residency.extend(residency_messages(changed))
            request.residency_reported = True
        return request

    def recent_xids(self, uuid: str) -> list[XidEvent]:
        """Xid events of this GPU within the health policy's memory (metrics)."""
        return self._xids.peek(uuid, time.time())

    def _uuid_by_index(self) -> dict[int, str]:
        return {d.index: d.uuid for d in self.backend.devices()}

    def health_reports(self) -> list[agents_pb2.GpuHealthReport]:
        self._xids.add(self.backend.drain_xid_events())
        now = time.time()
        reports = []
        for device in self.backend.devices():
            sample = self.backend.sample(device.uuid)
            recent = self._xids.recent(device.uuid, now)
            verdict = evaluate(sample, recent, now, self.settings.thresholds)
            reports.append(
                agents_pb2.GpuHealthReport(
                    uuid=device.uuid,
                    health=_HEALTH[verdict.health],
                    reasons=verdict.reasons,
                    temperature_c=sample.temperature_c or 0.0,
                    power_mw=sample.power_mw or 0,
                    utilization_pct=sample.utilization_pct or 0,
                    memory_used_mib=sample.memory_used_mib or 0,
                    recent_xids=[e.xid for e in recent],
                )
            )
        return reports


def residency_messages(entries: list[ResidentModel]) -> list[types_pb2.ModelResidency]:
    return [
        types_pb2.ModelResidency(
            model=e.model,
            tier=_TIERS[e.tier],
            gpu_uuid=e.gpu_uuid,
            standby=e.standby,
            size_bytes=e.size_bytes,
        )
        for e in entries
    ]
