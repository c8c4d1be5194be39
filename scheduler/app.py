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
from scheduler.allocator.capacity import CapacityChange
from scheduler.allocator.notifier import ChangeNotifier
from scheduler.api.interceptor import ApiInterceptor
from scheduler.api.server import Listeners, create_server
from scheduler.api.validation import validate_request
from scheduler.background.db_health import DatabaseHealthLoop
from scheduler.background.deployments import DeploymentLoop
from scheduler.background.leader import DEFAULT_LEASE_TTL_S, LeaderLease
from scheduler.background.liveness import NodeLivenessLoop
from scheduler.background.loops import PendingQueueLoop, start_loops
from scheduler.background.preemption import PreemptionDeadlineLoop
from scheduler.domain.callers import SYSTEM
from scheduler.domain.clock import Clock, SystemClock
from scheduler.domain.generations import (
    DEFAULT_GENERATION_POLICY,
    GenerationPolicy,
    policy_from_document,
)
from scheduler.domain.priorities import configure_priority_classes
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE, load_templates
from scheduler.metrics.state import (
    SchedulerStateCollector,
    scheduler_registry,
    watch_database_errors,
)
from scheduler.placement import config_for_policy
from scheduler.placement.policies import DEFAULT_PACKING_POLICY
from scheduler.routing.service import RoutingService
from scheduler.security.bootstrap import (
    ensure_admin_config,
    local_server_tls,
    server_tls_from_files,
    serving_hosts,
)
from scheduler.security.channels import MetricsListener, ServerTls, serve_metrics
from scheduler.services.agents import AgentHub, HeartbeatRecorder
from scheduler.services.allocations import AllocationService
from scheduler.services.audit import AuditLog
from scheduler.services.cost import CostService
from scheduler.services.deployments import DeploymentService
from scheduler.services.fleet import FleetService
from scheduler.services.fleet_view import FleetView
from scheduler.services.grants import PriorityGrants
from scheduler.services.health import HealthService
from scheduler.services.listener import NotificationListener
from scheduler.services.model_residency import ModelService
from scheduler.services.relay import AgentRelay
from scheduler.services.tenants import TenantService
from scheduler.services.tokens import TokenService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService
from scheduler.serving.prices import load_prices
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
    packing_policy: str = DEFAULT_PACKING_POLICY
    # YAML with `workload_classes: {class: {primary, overflow, …}}`; None: the built-in matrix.
    placement_policy_file: Path | None = None
    # Worker templates the agents launch (deploy/worker-templates.yaml), and
    # the ports handed out as MASTER_PORT on rank 0's node.
    worker_templates_file: Path = DEFAULT_TEMPLATES_FILE
    rendezvous_ports: tuple[int, int] = (29500, 29999)
    # A tenant's allocations waiting at once; more is RESOURCE_EXHAUSTED.
    max_pending_per_tenant: int = DEFAULT_MAX_PENDING_PER_TENANT
    # Prometheus metrics on HOST:PORT ("": none); HTTPS with both files.
    metrics_listen: str = ""
    metrics_tls_cert: Path | None = None
    metrics_tls_key: Path | None = None
    # Deployments (issue 13): the reconcile loop's period, and the HTTP ports
    # handed to replica engines (unique among live replicas).
    deployment_loop_s: float = 2.0
    engine_ports: tuple[int, int] = (18000, 18999)
    # GPU prices for `gpupool cost` (None: $GPUPOOL_PRICES, else deploy/prices.yaml).
    prices_file: Path | None = None


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


def self_fencing(settings: SchedulerSettings) -> tuple[float, float]:
    """How long an agent may go unacknowledged before it stops its workers,
    and how long after that what still runs is killed.

    The scheduler moves a node's work no sooner than timeout + grace after the
    heartbeat it last stored; the agent counts from when it *sent* the last
    heartbeat acknowledged as stored (earlier). The agent fences at
    grace + timeout/2 and kills one kill interval later; the node's fence
    guard (agent/workers/fence_guard.py), for an agent that is frozen or dead,
    one interval after that. With the interval at most timeout/8 every worker
    is gone by grace + 3/4 timeout: before the work can be placed elsewhere,
    and past the grace, as the failover issue asks.
    """
    timeout, grace = settings.heartbeat_timeout_s, settings.failover_grace_s
    return grace + timeout / 2, min(2.0, timeout / 8)


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
        watch_database_errors(self.engine)
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
            *self_fencing(settings),
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
        self.leader.on_elected = lambda epoch: self.liveness.leadership_began()
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
            on_capacity_nodes=self._capacity_changed_on_nodes,
        )
        self.queue_loop = PendingQueueLoop(self.allocator, self.leader)
        self.preemption = PreemptionDeadlineLoop(
            self.engine, self.allocator, self.leader, self.clock
        )
        self.deployments = DeploymentService(
            self.engine,
            self.clock,
            self.workers.templates,
            self.grants,
            _generation_policy(settings),
        )
        self.agents.engine_metrics = self.deployments.record_metrics
        low, high = settings.engine_ports
        self.deployment_loop = DeploymentLoop(
            self.engine,
            self.deployments,
            self.allocations,
            self.leader,
            self.clock,
            range(low, high + 1),
        )
        self.cost = CostService(self.engine, self.clock, load_prices(settings.prices_file))
        # The Router service (issue 14): deployments' replicas, kept from the replica watch.
        self.routing = RoutingService(feed=self.deployments.watch_replicas, feed_caller=SYSTEM)
        self._loops: BackgroundScheduler | None = None
        self._stopped = False
        self.database_health = DatabaseHealthLoop(
            self.engine, lambda serving: self.servers.set_serving(serving)
        )
        self.metrics_registry = scheduler_registry(
            SchedulerStateCollector(
                self.engine,
                self.clock,
                settings.replica_id,
                lambda: self.leader.is_leader,
                self.agents.connected_nodes,
            )
        )
        self.metrics: MetricsListener | None = None
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
            fleet_view=FleetView(self.engine, self.notifier),
            deployments=self.deployments,
            cost=self.cost,
            routing=self.routing,
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
        # Listening before the allocator's first load: no change slips between
        # them, and the listener's first connection need not reload it all again.
        listening = self.listener.start()
        self.allocator.start()
        self.agents.start()
        if listening and self.leader.is_leader:
            # What its first connection no longer asks: the queue, retried at start.
            self.allocator.request_pending_pass()
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
            self._loops.add_job(
                self.deployment_loop.run_once,
                "interval",
                seconds=self.settings.deployment_loop_s,
                jitter=self.settings.deployment_loop_s / 10,
                max_instances=1,
                coalesce=True,
            )
        self.servers.start()
        if self.settings.metrics_listen:
            cert, key = self.settings.metrics_tls_cert, self.settings.metrics_tls_key
            self.metrics = serve_metrics(
                self.settings.metrics_listen,
                self.metrics_registry,
                str(cert) if cert else None,
                str(key) if key else None,
            )
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
        if self.metrics is not None:
            self.metrics.stop()
        self.routing.stop()
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

    def _capacity_changed_on_nodes(self, change: CapacityChange) -> None:
        self.allocator.capacity_changed(change)
        if self.leader.is_leader:
            self.allocator.request_pending_pass()

    def _fleet_changed_elsewhere(self, nodes: list[str]) -> None:
        self.allocator.refresh_nodes(nodes)
        if self.leader.is_leader:
            self.allocator.request_pending_pass()

    def _reconnected(self) -> None:
        self._capacity_changed()
        self.notifier.publish_all()
