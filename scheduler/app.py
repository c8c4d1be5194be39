"""Wires one scheduler replica together: database, allocator, loops, gRPC."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from scheduler.api.server import create_server
from scheduler.background.leader import LeaderLease
from scheduler.background.liveness import NodeLivenessLoop
from scheduler.background.loops import PendingQueueLoop, start_loops
from scheduler.background.preemption import PreemptionDeadlineLoop
from scheduler.domain.clock import Clock, SystemClock
from scheduler.domain.generations import (
    DEFAULT_GENERATION_POLICY,
    GenerationPolicy,
    policy_from_document,
)
from scheduler.domain.priorities import configure_priority_classes
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE, load_templates
from scheduler.placement import config_for_policy
from scheduler.services.agents import AgentHub, HeartbeatRecorder
from scheduler.services.allocations import AllocationService
from scheduler.services.allocator import Allocator
from scheduler.services.fleet import FleetService
from scheduler.services.health import HealthService
from scheduler.services.listener import NotificationListener
from scheduler.services.models import ModelService
from scheduler.services.notifier import ChangeNotifier
from scheduler.services.tenants import TenantService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService
from scheduler.store.database import (
    EmbeddedPostgres,
    create_db_engine,
    libpq_url,
    migrate,
    normalise_url,
)

log = logging.getLogger(__name__)


@dataclass
class SchedulerSettings:
    database_url: str | None = field(default_factory=lambda: os.environ.get("GPUPOOL_DATABASE_URL"))
    data_dir: Path = Path(".gpupool")
    listen: str = "127.0.0.1:50051"
    replica_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    )
    run_loops: bool = True
    # Agents heartbeat this often; a node silent for heartbeat_timeout_s is
    # unreachable, and failover_grace_s later its allocations move.
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 10.0
    failover_grace_s: float = 30.0
    # YAML with `classes: [{name, value, preemptible, grace_s, min_runtime_s}]`.
    priority_classes_file: Path | None = None
    # How fractional and whole-GPU requests are packed (placement.policies.POLICY_NAMES).
    packing_policy: str = "default"
    # YAML with `workload_classes: {class: {primary, overflow, …}}`; None: the built-in matrix.
    placement_policy_file: Path | None = None
    # Worker templates the agents launch (deploy/worker-templates.yaml), and
    # the ports handed out as MASTER_PORT on rank 0's node.
    worker_templates_file: Path = DEFAULT_TEMPLATES_FILE
    rendezvous_ports: tuple[int, int] = (29500, 29999)


def _generation_policy(settings: SchedulerSettings) -> GenerationPolicy:
    if settings.placement_policy_file is None:
        return DEFAULT_GENERATION_POLICY
    document = yaml.safe_load(settings.placement_policy_file.read_text()) or {}
    return policy_from_document(document)


class SchedulerApp:
    def __init__(self, settings: SchedulerSettings, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        if settings.priority_classes_file is not None:
            document = yaml.safe_load(settings.priority_classes_file.read_text()) or {}
            configure_priority_classes(list(document.get("classes", [])))
        # The configured URL, or the embedded PostgreSQL in the data directory.
        self.embedded: EmbeddedPostgres | None = None
        if settings.database_url:
            self.database_url = normalise_url(settings.database_url)
        else:
            self.embedded = EmbeddedPostgres(settings.data_dir / "postgres")
            self.database_url = self.embedded.url
        migrate(self.database_url)
        self.engine: Engine = create_db_engine(self.database_url)
        conninfo = libpq_url(self.database_url)
        self.notifier = ChangeNotifier()
        self.leader = LeaderLease(conninfo)
        self.allocator = Allocator(
            self.engine,
            self.notifier,
            self.clock,
            settings.replica_id,
            is_leader=lambda: self.leader.is_leader,
            placement_config=config_for_policy(
                settings.packing_policy, _generation_policy(settings)
            ),
        )
        low, high = settings.rendezvous_ports
        self.workers = WorkerService(
            self.engine,
            self.allocator,
            self.notifier,
            self.clock,
            load_templates(settings.worker_templates_file),
            settings.replica_id,
            range(low, high + 1),
        )
        self.allocations = AllocationService(
            self.engine, self.allocator, self.notifier, self.clock, self.workers
        )
        self.fleet = FleetService(self.engine, self.allocator, self.clock, settings.replica_id)
        self.health = HealthService(self.engine, self.allocator)
        self.tenants = TenantService(self.engine, self.allocator, self.clock)
        self.heartbeats = HeartbeatRecorder(self.engine, self.fleet)
        self.models = ModelService(self.engine, self.fleet, self.clock, settings.replica_id)
        self.agents = AgentHub(
            self.engine,
            self.fleet,
            self.health,
            self.heartbeats,
            self.clock,
            settings.heartbeat_interval_s,
            self.models,
        )
        self.allocator.on_nodes_changed = self.agents.nodes_changed
        self.agents.prepare_allocations = self.workers.prepare
        self.workers.nodes_changed = self.agents.nodes_changed
        self.logs = LogRelay(self.engine, self.agents)
        self.liveness = NodeLivenessLoop(
            self.engine,
            self.allocator,
            self.leader,
            self.clock,
            settings.heartbeat_timeout_s,
            settings.failover_grace_s,
        )
        self.listener = NotificationListener(
            conninfo,
            settings.replica_id,
            on_allocations=self.notifier.publish,
            on_capacity=self._capacity_changed,
            on_reconnect=self._reconnected,
            on_nodes=self.agents.nodes_changed,
        )
        self.queue_loop = PendingQueueLoop(self.allocator, self.leader)
        self.preemption = PreemptionDeadlineLoop(
            self.engine, self.allocator, self.leader, self.clock
        )
        self._loops: BackgroundScheduler | None = None
        self.server, self.port, self._health = create_server(
            settings.listen,
            self.allocations,
            self.fleet,
            self.agents,
            self.tenants,
            self.models,
            self.workers,
            self.logs,
        )

    @property
    def address(self) -> str:
        host = self.settings.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    def start(self) -> None:
        self.leader.run_once()
        self.allocator.start()
        self.agents.start()
        self.listener.start()
        if self.settings.run_loops:
            self._loops = start_loops(
                self.leader,
                self.queue_loop,
                self.heartbeats,
                self.liveness,
                self.preemption,
                self.settings.heartbeat_interval_s,
            )
        self.server.start()
        log.info("scheduler %s listening on %s", self.settings.replica_id, self.address)

    def stop(self, grace: float = 5.0) -> None:
        self._health.enter_graceful_shutdown()
        self.notifier.close()  # ends open WatchAllocation streams
        self.agents.close_all()  # ends agent streams; agents reconnect elsewhere
        self.server.stop(grace).wait()
        if self._loops is not None:
            self._loops.shutdown(wait=False)
        self.listener.stop()
        self.allocator.stop()
        self.leader.close()
        self.engine.dispose()
        if self.embedded is not None:
            self.embedded.stop()

    def wait(self) -> None:
        self.server.wait_for_termination()

    def _capacity_changed(self) -> None:
        self.allocator.mark_stale()
        if self.leader.is_leader:
            self.allocator.request_pending_pass()

    def _reconnected(self) -> None:
        self._capacity_changed()
        self.notifier.publish_all()


def channel_ready(address: str, timeout: float = 10.0) -> bool:
    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()
