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
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from agent.engine_metrics import EngineScraper
from agent.health import HealthThresholds, XidMemory, evaluate
from agent.nvml import NvmlBackend
from agent.residency import (
    ResidencyFromFleetFile,
    ResidencyFromJsonFile,
    ResidencyTracker,
)
from agent.workers.logs import LogServer
from agent.workers.supervisor import Supervisor
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
    scheduler: str  # the scheduler's agent port (mutual TLS)
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
        self._interval = settings.heartbeat_interval_s
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

    def ack_preemption(self, allocation_id: str, checkpoint_uri: str) -> None:
        with open_channel(self.settings.scheduler, self.settings.credentials) as channel:
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
        self.engines.start()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._session()
            except grpc.RpcError as exc:
                log.warning("scheduler stream ended: %s", exc.code())
            finally:
                self.connected.clear()
            if time.monotonic() - started > 30:
                backoff = 0.5  # the last session was healthy; start over
            self._stop.wait(random.uniform(0, backoff))  # full jitter
            backoff = min(backoff * 2, self.settings.max_backoff_s)
        self.supervisor.close()  # workers keep running: the next agent adopts them
        self.engines.stop()
        self.logs.stop_all()

    def _session(self) -> None:
        with open_channel(self.settings.scheduler, self.settings.credentials) as channel:
            stub = agents_pb2_grpc.AgentsStub(channel)
            outbound: queue.Queue[agents_pb2.AgentMessage] = queue.Queue()
            outbound.put(agents_pb2.AgentMessage(hello=self.hello()))
            self._outbound = outbound
            try:
                responses = stub.Connect(self._messages(outbound))
                stopper = threading.Thread(
                    target=self._cancel_on_stop, args=(responses,), daemon=True
                )
                stopper.start()
                for message in responses:
                    self.connected.set()
                    self._handle(message, outbound)
            finally:
                self._outbound = None

    def _cancel_on_stop(self, call: grpc.RpcContext) -> None:
        self._stop.wait()
        call.cancel()  # type: ignore[no-untyped-call]

    def _messages(
        self, outbound: queue.Queue[agents_pb2.AgentMessage]
    ) -> Iterator[agents_pb2.AgentMessage]:
        """What the agent sends: queued messages, and a heartbeat every interval."""
        next_beat = time.monotonic() + self._interval
        while not self._stop.is_set():
            try:
                yield outbound.get(timeout=max(0.0, next_beat - time.monotonic()))
                continue
            except queue.Empty:
                pass
            yield agents_pb2.AgentMessage(heartbeat=self.heartbeat())
            next_beat = time.monotonic() + self._interval

    def _handle(
        self, message: agents_pb2.SchedulerMessage, outbound: queue.Queue[agents_pb2.AgentMessage]
    ) -> None:
        body = message.WhichOneof("body")
        if body == "desired":
            desired = message.desired
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
