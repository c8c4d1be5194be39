"""gRPC servicers: validate the wire format, call a service with the Caller
the interceptor established, convert back."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC

import grpc

from gpupool.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    agents_pb2,
    agents_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
)
from scheduler.api import batch_converters, converters, deployments_servicer, trust_converters
from scheduler.api.interceptor import current_caller
from scheduler.domain.callers import require_node
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import GpupoolError, InvalidArgument, Unavailable
from scheduler.services.agents import AgentHub, AgentSession
from scheduler.services.allocations import AllocationService
from scheduler.services.audit import AuditLog
from scheduler.services.fleet import FleetService
from scheduler.services.fleet_view import FleetView
from scheduler.services.model_residency import ModelService
from scheduler.services.tenants import TenantService
from scheduler.services.tokens import TokenService
from scheduler.services.worker_logs import LogRelay
from scheduler.services.workers import WorkerService

log = logging.getLogger(__name__)


def _deadline(context: grpc.ServicerContext) -> float | None:
    """The caller's deadline on time.monotonic()'s clock, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def _require(value: str, what: str) -> str:
    if not value:
        raise InvalidArgument(f"{what} is required")
    return value


def handle_agent_message(
    fleet: FleetService,
    agents: AgentHub,
    workers: WorkerService,
    logs: LogRelay,
    session: AgentSession,
    message: agents_pb2.AgentMessage,
) -> None:
    """One message of an agent's stream, whichever server carries it."""
    body = message.WhichOneof("body")
    if body == "heartbeat":
        reports = converters.health_reports(message.heartbeat.health)
        residency = converters.heartbeat_residency(message.heartbeat)
        agents.heartbeat(session, reports, residency, message.heartbeat.seq)
    elif body == "observed":
        agents.observed(session, message.observed.running_allocation_ids)
    elif body == "interruption":
        fleet.interrupt(session.node, message.interruption.in_seconds)
    elif body == "workers":
        statuses = converters.worker_reports(message.workers.workers)
        workers.report(session.node, statuses)
    elif body == "mig_device":
        device = message.mig_device
        workers.mig_device(
            session.node,
            device.allocation_id,
            device.gpu_uuid,
            device.mig_start,
            device.mig_device_uuid,
        )
    elif body == "log_chunk":
        logs.deliver(converters.log_chunk(message.log_chunk))
    elif body == "engine_metrics":
        samples = deployments_servicer.engine_samples(message.engine_metrics)
        agents.engine_metrics(session.node, samples)


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, allocations: AllocationService) -> None:
        self._allocations = allocations

    def Allocate(
        self, request: scheduler_pb2.AllocateRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.AllocateResponse:
        spec = converters.allocation_spec(request)
        record = self._allocations.allocate(current_caller(), spec, _deadline(context))
        return scheduler_pb2.AllocateResponse(allocation=converters.allocation_message(record))

    def Release(
        self, request: scheduler_pb2.ReleaseRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.ReleaseResponse:
        allocation_id = _require(request.allocation_id, "allocation_id")
        record = self._allocations.release(current_caller(), allocation_id, _deadline(context))
        return scheduler_pb2.ReleaseResponse(allocation=converters.allocation_message(record))

    def AllocateMany(
        self, request: scheduler_pb2.AllocateManyRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.AllocateManyResponse:
        specs = batch_converters.allocation_specs(request.requests)
        outcomes = self._allocations.allocate_many(current_caller(), specs, _deadline(context))
        return scheduler_pb2.AllocateManyResponse(
            results=[batch_converters.allocate_result(o) for o in outcomes]
        )

    def ReleaseMany(
        self, request: scheduler_pb2.ReleaseManyRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.ReleaseManyResponse:
        outcomes = self._allocations.release_many(
            current_caller(), request.allocation_ids, _deadline(context)
        )
        return scheduler_pb2.ReleaseManyResponse(
            results=[batch_converters.release_result(o) for o in outcomes]
        )

    def GetAllocation(
        self, request: scheduler_pb2.GetAllocationRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.GetAllocationResponse:
        record = self._allocations.get(
            current_caller(), _require(request.allocation_id, "allocation_id")
        )
        return scheduler_pb2.GetAllocationResponse(allocation=converters.allocation_message(record))

    def ListAllocations(
        self, request: scheduler_pb2.ListAllocationsRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.ListAllocationsResponse:
        records, token = self._allocations.list(
            current_caller(),
            tenant=request.tenant,
            state=converters.allocation_state_name(request.state),
            node=request.node,
            page_size=request.page_size,
            page_token=request.page_token,
            request_id=request.request_id,
        )
        return scheduler_pb2.ListAllocationsResponse(
            allocations=[converters.allocation_message(r) for r in records],
            next_page_token=token,
        )

    def AckPreemption(
        self, request: scheduler_pb2.AckPreemptionRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.AckPreemptionResponse:
        record = self._allocations.acknowledge_preemption(
            current_caller(),
            _require(request.allocation_id, "allocation_id"),
            request.checkpoint_uri,
        )
        return scheduler_pb2.AckPreemptionResponse(allocation=converters.allocation_message(record))

    def ReportCheckpoint(
        self, request: scheduler_pb2.ReportCheckpointRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.ReportCheckpointResponse:
        record = self._allocations.report_checkpoint(
            current_caller(),
            _require(request.allocation_id, "allocation_id"),
            request.checkpoint_uri,
        )
        return scheduler_pb2.ReportCheckpointResponse(
            allocation=converters.allocation_message(record)
        )

    def WatchAllocation(
        self, request: scheduler_pb2.WatchAllocationRequest, context: grpc.ServicerContext
    ) -> Iterator[scheduler_pb2.WatchAllocationResponse]:
        allocation_id = _require(request.allocation_id, "allocation_id")
        updates = self._allocations.watch(current_caller(), allocation_id, context.is_active)
        for record, event in updates:
            yield scheduler_pb2.WatchAllocationResponse(
                allocation=converters.allocation_message(record),
                event=converters.event_message(event) if event else None,
            )


class AgentsServicer(agents_pb2_grpc.AgentsServicer):
    def __init__(
        self, fleet: FleetService, agents: AgentHub, workers: WorkerService, logs: LogRelay
    ) -> None:
        self._fleet = fleet
        self._agents = agents
        self._workers = workers
        self._logs = logs

    def Connect(
        self, request_iterator: Iterator[agents_pb2.AgentMessage], context: grpc.ServicerContext
    ) -> Iterator[agents_pb2.SchedulerMessage]:
        first = next(request_iterator, None)
        if first is None or first.WhichOneof("body") != "hello":
            raise InvalidArgument("an agent's stream must open with a hello")
        hello = converters.agent_hello(first.hello)
        _require(hello.node, "hello.node.name")
        require_node(current_caller(), hello.node, "the hello")
        session = self._agents.connect(hello)
        self._workers.report(hello.node, hello.workers)
        # The stream's outbound side runs here; its inbound side on a reader thread.
        reader = threading.Thread(
            target=self._read,
            args=(request_iterator, session),
            name=f"agent-{hello.node}",
            daemon=True,
        )
        reader.start()
        context.add_callback(session.close)
        try:
            for message in session.messages():
                yield converters.scheduler_message(message)
        finally:
            self._agents.disconnect(session)

    def _read(self, messages: Iterator[agents_pb2.AgentMessage], session: AgentSession) -> None:
        try:
            for message in messages:
                try:
                    self._handle(session, message)
                except GpupoolError as exc:
                    # One bad report is dropped, not the stream: ending it would
                    # bring the agent back with the same report, node flapping.
                    kind = message.WhichOneof("body")
                    log.warning("agent %s: %s refused: %s", session.node, kind, exc.message)
        except grpc.RpcError:
            pass  # the agent went away; the session closes below
        except Exception:
            log.exception("agent %s: handling its message failed", session.node)
        finally:
            session.close()

    def _handle(self, session: AgentSession, message: agents_pb2.AgentMessage) -> None:
        handle_agent_message(self._fleet, self._agents, self._workers, self._logs, session, message)

    def RegisterNode(
        self, request: agents_pb2.RegisterNodeRequest, context: grpc.ServicerContext
    ) -> agents_pb2.RegisterNodeResponse:
        require_node(current_caller(), request.name, "RegisterNode")
        node = self._fleet.register_node(
            request.name,
            request.hostname or request.name,
            dict(request.labels),
            converters.gpu_specs(request),
        )
        return agents_pb2.RegisterNodeResponse(node=converters.node_message(node, with_gpus=True))

    def Heartbeat(
        self, request: agents_pb2.HeartbeatRequest, context: grpc.ServicerContext
    ) -> agents_pb2.HeartbeatResponse:
        require_node(current_caller(), _require(request.node, "node"), "Heartbeat")
        reports = converters.health_reports(request.health)
        residency = converters.heartbeat_residency(request)
        state = self._agents.unary_heartbeat(request.node, reports, residency)
        return agents_pb2.HeartbeatResponse(state=converters.node_state(state))


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        fleet: FleetService,
        allocations: AllocationService,
        agents: AgentHub,
        tenants: TenantService,
        models: ModelService,
        logs: LogRelay,
        tokens: TokenService,
        audit: AuditLog,
        fleet_view: FleetView | None = None,
    ) -> None:
        self._fleet_view = fleet_view
        self._tokens = tokens
        self._audit = audit
        self._logs = logs
        self._fleet = fleet
        self._tenants = tenants
        self._models = models
        self._agents = agents
        self._allocations = allocations
        self._scheduler = SchedulerServicer(allocations)

    def ListNodes(
        self, request: admin_pb2.ListNodesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListNodesResponse:
        return admin_pb2.ListNodesResponse(
            nodes=[converters.node_message(n, with_gpus=True) for n in self._fleet.list_nodes()]
        )

    def WatchFleet(
        self, request: admin_pb2.WatchFleetRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.WatchFleetResponse]:
        if self._fleet_view is None:
            raise Unavailable("this replica serves no fleet view")
        views = self._fleet_view.watch(request.queue_limit, request.events_limit, context.is_active)
        for view in views:
            yield admin_pb2.WatchFleetResponse(
                nodes=[converters.node_message(n, with_gpus=True) for n in view.nodes],
                queue=[converters.allocation_message(r) for r in view.queue],
                pending_count=view.pending_count,
                events=[
                    admin_pb2.FleetEvent(
                        allocation_id=allocation_id,
                        tenant=tenant,
                        event=converters.event_message(event),
                    )
                    for allocation_id, tenant, event in view.events
                ],
            )

    def GetNode(
        self, request: admin_pb2.GetNodeRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetNodeResponse:
        node = self._fleet.get_node(_require(request.name, "name"))
        return admin_pb2.GetNodeResponse(node=converters.node_message(node, with_gpus=True))

    def ListGpus(
        self, request: admin_pb2.ListGpusRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListGpusResponse:
        gpus = self._fleet.list_gpus(request.node)
        return admin_pb2.ListGpusResponse(gpus=[converters.gpu_message(g) for g in gpus])

    def ListAllocations(
        self, request: scheduler_pb2.ListAllocationsRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.ListAllocationsResponse:
        return self._scheduler.ListAllocations(request, context)

    def GetAllocation(
        self, request: scheduler_pb2.GetAllocationRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.GetAllocationResponse:
        return self._scheduler.GetAllocation(request, context)

    def ReleaseAllocation(
        self, request: scheduler_pb2.ReleaseRequest, context: grpc.ServicerContext
    ) -> scheduler_pb2.ReleaseResponse:
        return self._scheduler.Release(request, context)

    def _node_action(self, name: str, admin_state: str) -> admin_pb2.NodeActionResponse:
        node = self._fleet.set_admin_state(_require(name, "name"), admin_state)
        return admin_pb2.NodeActionResponse(node=converters.node_message(node))

    def CordonNode(
        self, request: admin_pb2.NodeActionRequest, context: grpc.ServicerContext
    ) -> admin_pb2.NodeActionResponse:
        return self._node_action(request.name, "cordoned")

    def UncordonNode(
        self, request: admin_pb2.NodeActionRequest, context: grpc.ServicerContext
    ) -> admin_pb2.NodeActionResponse:
        return self._node_action(request.name, "active")

    def DrainNode(
        self, request: admin_pb2.NodeActionRequest, context: grpc.ServicerContext
    ) -> admin_pb2.NodeActionResponse:
        return self._node_action(request.name, "draining")

    def Preempt(
        self, request: admin_pb2.PreemptRequest, context: grpc.ServicerContext
    ) -> admin_pb2.PreemptResponse:
        record = self._allocations.preempt(
            current_caller(),
            _require(request.allocation_id, "allocation_id"),
            float(request.grace_seconds),
        )
        return admin_pb2.PreemptResponse(allocation=converters.allocation_message(record))

    def ListQueue(
        self, request: admin_pb2.ListQueueRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListQueueResponse:
        records = self._allocations.queue(request.limit)
        return admin_pb2.ListQueueResponse(
            allocations=[converters.allocation_message(r) for r in records]
        )

    def SetTenantQuota(
        self, request: admin_pb2.SetTenantQuotaRequest, context: grpc.ServicerContext
    ) -> admin_pb2.SetTenantQuotaResponse:
        record = self._tenants.set_quota(request.name, request.quota_units, request.weight)
        return admin_pb2.SetTenantQuotaResponse(tenant=self._tenant_message(record.name))

    def ListTenants(
        self, request: admin_pb2.ListTenantsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListTenantsResponse:
        records = self._tenants.list()
        grants = self._allocations.grants.granted_many([r.name for r in records])
        return admin_pb2.ListTenantsResponse(
            tenants=[trust_converters.tenant_message(r, grants[r.name]) for r in records]
        )

    def _tenant_message(self, name: str) -> admin_pb2.Tenant:
        record = next(r for r in self._tenants.list() if r.name == name)
        return trust_converters.tenant_message(record, self._allocations.grants.granted(name))

    def SetTenantPriorityClasses(
        self, request: admin_pb2.SetTenantPriorityClassesRequest, context: grpc.ServicerContext
    ) -> admin_pb2.SetTenantPriorityClassesResponse:
        name = _require(request.name, "name")
        self._allocations.grants.set(name, list(request.priority_classes), request.reset)
        return admin_pb2.SetTenantPriorityClassesResponse(tenant=self._tenant_message(name))

    def CreateToken(
        self, request: admin_pb2.CreateTokenRequest, context: grpc.ServicerContext
    ) -> admin_pb2.CreateTokenResponse:
        record, secret = self._tokens.create(
            current_caller(),
            request.name,
            trust_converters.token_role(request.role),
            request.tenant,
            request.ttl_seconds,
        )
        return admin_pb2.CreateTokenResponse(
            token=trust_converters.token_message(record), secret=secret
        )

    def ListTokens(
        self, request: admin_pb2.ListTokensRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListTokensResponse:
        records = self._tokens.list(request.tenant, request.include_revoked)
        return admin_pb2.ListTokensResponse(
            tokens=[trust_converters.token_message(r) for r in records]
        )

    def RevokeToken(
        self, request: admin_pb2.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> admin_pb2.RevokeTokenResponse:
        record = self._tokens.revoke(_require(request.id, "id"))
        return admin_pb2.RevokeTokenResponse(token=trust_converters.token_message(record))

    def GetAllocatorStats(
        self, request: admin_pb2.GetAllocatorStatsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetAllocatorStatsResponse:
        stats = self._allocations.allocator_stats()
        return admin_pb2.GetAllocatorStatsResponse(
            replica_id=stats.replica_id,
            leader=stats.leader,
            batches=stats.batches,
            commands=stats.commands,
            round_trips=stats.round_trips,
            pending_passes=stats.pending_passes,
        )

    def DeleteNode(
        self, request: admin_pb2.DeleteNodeRequest, context: grpc.ServicerContext
    ) -> admin_pb2.DeleteNodeResponse:
        name = _require(request.name, "name")
        connected = self._agents.session_for(name) is not None
        moved = self._fleet.delete_node(name, request.force, agent_connected=connected)
        return admin_pb2.DeleteNodeResponse(
            name=name, requeued=[converters.allocation_message(a) for a in moved]
        )

    def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListAuditEventsResponse:
        since = request.since.ToDatetime(tzinfo=UTC) if request.HasField("since") else None
        events = self._audit.query(
            since, request.actor, request.tenant, request.node, request.limit
        )
        return admin_pb2.ListAuditEventsResponse(
            events=[trust_converters.audit_message(e) for e in events]
        )

    def InterruptNode(
        self, request: admin_pb2.InterruptNodeRequest, context: grpc.ServicerContext
    ) -> admin_pb2.InterruptNodeResponse:
        node, asked = self._fleet.interrupt(_require(request.name, "name"), request.in_seconds)
        return admin_pb2.InterruptNodeResponse(node=converters.node_message(node), preempted=asked)

    def InjectFault(
        self, request: admin_pb2.InjectFaultRequest, context: grpc.ServicerContext
    ) -> admin_pb2.InjectFaultResponse:
        node = _require(request.node, "node")
        self._fleet.get_node(node)  # NOT_FOUND naming the node before "not connected here"
        self._agents.inject_fault(node, request.gpu_index, request.fault, request.clear)
        return admin_pb2.InjectFaultResponse()

    def ListModels(
        self, request: admin_pb2.ListModelsRequest, context: grpc.ServicerContext
    ) -> admin_pb2.ListModelsResponse:
        infos = self._models.list_models(request.model)
        return admin_pb2.ListModelsResponse(
            models=[converters.model_info_message(i) for i in infos]
        )

    def WorkerLogs(
        self, request: admin_pb2.WorkerLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[admin_pb2.WorkerLogsChunk]:
        chunks = self._logs.stream(
            _require(request.allocation_id, "allocation_id"),
            request.rank,
            request.tail_bytes,
            request.follow,
            context.is_active,
        )
        for data in chunks:
            yield admin_pb2.WorkerLogsChunk(data=data)

    def GetCatalogue(
        self, request: admin_pb2.GetCatalogueRequest, context: grpc.ServicerContext
    ) -> admin_pb2.GetCatalogueResponse:
        return converters.catalogue_response(list(CATALOGUE.values()))
