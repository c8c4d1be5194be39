"""Wires one scheduler replica together: database, allocator, loops, gRPC."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from scheduler.allocator.allocator import DEFAULT_MAX_PENDING_PER_TENANT, Allocator
from scheduler.allocator.notifier import ChangeNotifier
from scheduler.api.interceptor import ApiInterceptor
from scheduler.api.server import Listeners, create_server
from scheduler.api.validation import validate_request
from scheduler.background.db_health import DatabaseHealthLoop
from scheduler.background.leader import DEFAULT_LEASE_TTL_S, LeaderLease
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
from scheduler.security.bootstrap import (
    ensure_admin_config,
    local_server_tls,
    server_tls_from_files,
    serving_hosts,
)
from scheduler.security.channels import ServerTls
from scheduler.services.agents import AgentHub, HeartbeatRecorder
from scheduler.services.allocations import AllocationService
from scheduler.services.audit import AuditLog
from scheduler.services.fleet import FleetService
from scheduler.services.grants import PriorityGrants
from scheduler.services.health import HealthService
from scheduler.services.listener import NotificationListener
from scheduler.services.model_residency import ModelService
from scheduler.services.relay import AgentRelay
from scheduler.services.tenants import TenantService
from scheduler.services.tokens import TokenService
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
    # Agents (client certificates, mutual TLS) dial this port; "" for none.
    agent_listen: str = "127.0.0.1:50052"
    # Plaintext and no authentication: every caller is an admin. Never the default.
    insecure: bool = False
    # Operator-provided TLS (all three, or none: then a local CA in data_dir).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    # Extra names for the local CA's serving certificate (a Service's DNS name).
    tls_hosts: tuple[str, ...] = ()
    replica_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"
    )
    run_loops: bool = True
    # Agents heartbeat this often; a node silent for heartbeat_timeout_s is
    # unreachable, and failover_grace_s later its allocations move. The
    # kubelet's figures: node status every 10 s, unreachable after 40 s (four
    # missed beats). Agents then fence themselves after 50 s without an
    # acknowledgement, 20 s before their work may move (self_fence_after).
    heartbeat_interval_s: float = 10.0
    heartbeat_timeout_s: float = 40.0
    failover_grace_s: float = 30.0
    # A leader that has not renewed its lease for this long is replaced.
    leader_lease_ttl_s: float = DEFAULT_LEASE_TTL_S
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
    # A tenant's allocations waiting at once; more is RESOURCE_EXHAUSTED.
    max_pending_per_tenant: int = DEFAULT_MAX_PENDING_PER_TENANT


def _server_tls(settings: SchedulerSettings) -> ServerTls | None:
    if settings.insecure:
        log.warning(
            "INSECURE: plaintext gRPC and no authentication on %s and %s; anyone who can "
            "reach them owns the fleet",
            settings.listen,
            settings.agent_listen or "(no agent port)",
        )
        return None
    cert, key, client_ca = settings.tls_cert, settings.tls_key, settings.client_ca
    if cert and key and client_ca:
        return server_tls_from_files(cert, key, client_ca)
    if cert or key or client_ca:
        raise ValueError("--tls-cert, --tls-key and --client-ca go together")
    return local_server_tls(settings.data_dir, serving_hosts(settings.listen, settings.tls_hosts))


def self_fence_after(settings: SchedulerSettings) -> float:
    """How long an agent may go unacknowledged before it stops its workers.

    The scheduler moves a node's work no sooner than timeout + grace after the
    heartbeat it last stored; the agent counts from when it *sent* the last
    heartbeat acknowledged as stored (earlier), and kills what is left
    FENCE_KILL_AFTER_S after fencing. So fencing at grace + timeout / 2 leaves
    the workers gone with timeout / 2 - FENCE_KILL_AFTER_S to spare, and past
    the grace, as the failover issue asks.
    """
    return settings.failover_grace_s + settings.heartbeat_timeout_s / 2


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
        self.leader = LeaderLease(self.engine, settings.replica_id, settings.leader_lease_ttl_s)
        self.allocator = Allocator(
            self.engine,
            self.notifier,
            self.clock,
            settings.replica_id,
            is_leader=lambda: self.leader.is_leader,
            fence=self.leader.fence,
            placement_config=config_for_policy(
                settings.packing_policy, _generation_policy(settings)
            ),
            max_pending_per_tenant=settings.max_pending_per_tenant,
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
        self.grants = PriorityGrants(self.engine, self.clock)
        self.allocations = AllocationService(
            self.engine, self.allocator, self.notifier, self.clock, self.grants, self.workers
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
            self_fence_after_s=self_fence_after(settings),
        )
        self.allocator.on_nodes_changed = self.agents.nodes_changed
        self.heartbeats.on_stored = self.agents.acknowledge
        self.agents.prepare_allocations = self.workers.prepare
        self.workers.nodes_changed = self.agents.nodes_changed
        self.relay = AgentRelay(self.engine, self.agents, settings.replica_id)
        self.agents.relay = self.relay
        self.logs = LogRelay(self.engine, self.agents, self.relay)
        self.tokens = TokenService(self.engine, self.clock)
        self.audit = AuditLog(self.engine, self.clock)
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
            on_command=self.relay.claim,
            on_log_chunk=self.relay.received_log_chunk,
            on_fleet=self._fleet_changed_elsewhere,
        )
        self.queue_loop = PendingQueueLoop(self.allocator, self.leader)
        self.preemption = PreemptionDeadlineLoop(
            self.engine, self.allocator, self.leader, self.clock
        )
        self._loops: BackgroundScheduler | None = None
        self._stopped = False
        self.database_health = DatabaseHealthLoop(
            self.engine, lambda serving: self.servers.set_serving(serving)
        )
        self.tls = _server_tls(settings)
        # Written at start() when the local CA is in use (no operator credentials).
        self.admin_config: Path | None = None
        interceptor = ApiInterceptor(
            self.tokens.authenticate, self.audit, validate_request, settings.insecure
        )
        self.servers = create_server(
            Listeners(settings.listen, settings.agent_listen, self.tls),
            interceptor,
            self.allocations,
            self.fleet,
            self.agents,
            self.tenants,
            self.models,
            self.workers,
            self.logs,
            self.tokens,
            self.audit,
        )
        self.port, self.agent_port = self.servers.ports

    @property
    def address(self) -> str:
        """The API port (TLS, bearer tokens)."""
        host = self.settings.listen.rsplit(":", 1)[0]
        return f"{host}:{self.port}"

    @property
    def agent_address(self) -> str:
        """The agent port (mutual TLS); "" when agents share the API port."""
        if not self.agent_port:
            return ""
        host = self.settings.agent_listen.rsplit(":", 1)[0]
        return f"{host}:{self.agent_port}"

    @property
    def local_ca(self) -> bool:
        s = self.settings
        return not s.insecure and s.tls_cert is None

    def start(self) -> None:
        self.leader.run_once()
        self.audit.start()
        if self.local_ca:
            self.admin_config = ensure_admin_config(
                self.tokens, self.settings.data_dir, self.address, self.agent_address
            )
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
                self.database_health,
            )
        self.servers.start()
        log.info("scheduler %s listening on %s", self.settings.replica_id, self.address)

    def stop(self, grace: float = 5.0) -> None:
        """Stop serving and hand the leader lease on; a second call does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.servers.enter_graceful_shutdown()
        self.notifier.close()  # ends open WatchAllocation streams
        self.agents.close_all()  # ends agent streams; agents reconnect elsewhere
        self.servers.stop(grace)
        if self._loops is not None:
            self._loops.shutdown(wait=False)
        self.listener.stop()
        self.allocator.stop()
        self.audit.stop()
        self.leader.close()
        self.engine.dispose()
        if self.embedded is not None:
            self.embedded.stop()

    def wait(self) -> None:
        self.servers.wait()

    def _capacity_changed(self) -> None:
        self.allocator.mark_stale()
        if self.leader.is_leader:
            self.allocator.request_pending_pass()

    def _fleet_changed_elsewhere(self, nodes: list[str]) -> None:
        self.allocator.refresh_nodes(nodes)
        if self.leader.is_leader:
            self.allocator.request_pending_pass()

    def _reconnected(self) -> None:
        self._capacity_changed()
        self.notifier.publish_all()
