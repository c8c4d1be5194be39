"""Protobuf <-> domain, in one place. No logic beyond translation and the
checks that only make sense on the wire (unknown enum numbers)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from gpupool.v1 import admin_pb2, agents_pb2, scheduler_pb2, types_pb2
from scheduler.domain.allocation import AllocationSpec, WorkerRequest
from scheduler.domain.auto_layout import ModelRequest
from scheduler.domain.catalogue import CATALOGUE, GpuModel
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.layout import ParallelLayout, layout_from_degrees
from scheduler.domain.mig import MigInstance, render_slot_map
from scheduler.domain.node_reports import GpuHealthReport, GpuSpecInput
from scheduler.domain.priorities import DEFAULT_PRIORITY_CLASS
from scheduler.domain.requests import Demand, FractionDemand, MigDemand, WholeDemand
from scheduler.domain.residency import ResidentModel
from scheduler.services.agents import (
    AgentHello,
    FaultCommand,
    HeartbeatAck,
    LogRequest,
    OutboundMessage,
    WorkerReport,
)
from scheduler.services.model_residency import ModelInfo
from scheduler.services.worker_logs import LogChunk
from scheduler.store.records import (
    AllocationEvent,
    AllocationRecord,
    GpuRecord,
    MigInstanceRecord,
    NodeRecord,
)

_WORKLOAD_CLASSES: dict[types_pb2.WorkloadClass, str] = {
    types_pb2.WORKLOAD_CLASS_UNSPECIFIED: "unspecified",
    types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL: "latency-critical",
    types_pb2.WORKLOAD_CLASS_THROUGHPUT: "throughput",
    types_pb2.WORKLOAD_CLASS_BATCH: "batch",
    types_pb2.WORKLOAD_CLASS_LONG_CONTEXT: "long-context",
    types_pb2.WORKLOAD_CLASS_SMALL_MODEL: "small-model",
}
_WORKLOAD_CLASS_ENUMS = {v: k for k, v in _WORKLOAD_CLASSES.items()}

_FAILURE_POLICIES: dict[types_pb2.FailurePolicy, str] = {
    types_pb2.FAILURE_POLICY_UNSPECIFIED: "requeue",
    types_pb2.FAILURE_POLICY_REQUEUE: "requeue",
    types_pb2.FAILURE_POLICY_FAIL: "fail",
}
_FAILURE_POLICY_ENUMS = {
    "requeue": types_pb2.FAILURE_POLICY_REQUEUE,
    "fail": types_pb2.FAILURE_POLICY_FAIL,
}

ALLOCATION_STATES: dict[types_pb2.AllocationState, str] = {
    types_pb2.ALLOCATION_STATE_PENDING: "pending",
    types_pb2.ALLOCATION_STATE_PLACED: "placed",
    types_pb2.ALLOCATION_STATE_RUNNING: "running",
    types_pb2.ALLOCATION_STATE_PREEMPTING: "preempting",
    types_pb2.ALLOCATION_STATE_RELEASED: "released",
    types_pb2.ALLOCATION_STATE_FAILED: "failed",
}
_ALLOCATION_STATE_ENUMS = {v: k for k, v in ALLOCATION_STATES.items()}

_NODE_STATES = {
    "ready": types_pb2.NODE_STATE_READY,
    "cordoned": types_pb2.NODE_STATE_CORDONED,
    "draining": types_pb2.NODE_STATE_DRAINING,
    "drained": types_pb2.NODE_STATE_DRAINED,
    "unreachable": types_pb2.NODE_STATE_UNREACHABLE,
}
_GPU_HEALTH = {
    "healthy": types_pb2.GPU_HEALTH_HEALTHY,
    "degraded": types_pb2.GPU_HEALTH_DEGRADED,
    "unhealthy": types_pb2.GPU_HEALTH_UNHEALTHY,
}
_GPU_HEALTH_NAMES = {v: k for k, v in _GPU_HEALTH.items()}


def timestamp(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def allocation_state_name(value: types_pb2.AllocationState) -> str:
    """'' for UNSPECIFIED (no filter); INVALID_ARGUMENT for an unknown number."""
    if value == types_pb2.ALLOCATION_STATE_UNSPECIFIED:
        return ""
    if value not in ALLOCATION_STATES:
        raise InvalidArgument(f"unknown allocation state {value}")
    return ALLOCATION_STATES[value]


def _layout(request: scheduler_pb2.AllocateRequest) -> ParallelLayout | None:
    if not request.HasField("layout"):
        return None
    wire = request.layout
    return layout_from_degrees(wire.tp, wire.pp, wire.ep, wire.cp, wire.replicas)


def _model_spec(request: scheduler_pb2.AllocateRequest) -> ModelRequest | None:
    if not request.HasField("model_spec"):
        return None
    wire = request.model_spec
    return ModelRequest(
        name=wire.name,
        params_billion=wire.params_billion,
        dtype=wire.dtype,
        context_tokens=wire.context_tokens,
        concurrent_sequences=wire.concurrent_sequences,
        memory_utilization=wire.memory_utilization,
    )


def _demand(request: scheduler_pb2.AllocateRequest, layout: ParallelLayout | None) -> Demand:
    which = request.WhichOneof("resources")
    if which is None and layout is not None:
        return WholeDemand(count=layout.world_size)
    if which is None and request.HasField("model_spec"):
        return WholeDemand(count=0)  # derived from the model spec (automatic layout)
    if which == "whole":
        return WholeDemand(count=request.whole.count)
    if which == "fraction":
        return FractionDemand(
            milli=request.fraction.milli_gpu, memory_mib=request.fraction.memory_mib
        )
    if which == "mig":
        return MigDemand(profile=request.mig.profile)
    raise InvalidArgument("set exactly one of whole, fraction or mig")


def allocation_spec(request: scheduler_pb2.AllocateRequest) -> AllocationSpec:
    if request.workload_class not in _WORKLOAD_CLASSES:
        raise InvalidArgument(f"unknown workload_class {request.workload_class}")
    if request.on_failure not in _FAILURE_POLICIES:
        raise InvalidArgument(f"unknown on_failure policy {request.on_failure}")
    layout = _layout(request)
    return AllocationSpec(
        tenant=request.tenant,
        request_id=request.request_id,
        demand=_demand(request, layout),
        layout=layout,
        model_spec=_model_spec(request),
        gpu_models=tuple(dict.fromkeys(request.gpu_models)),
        priority_class=request.priority_class or DEFAULT_PRIORITY_CLASS,
        workload_class=_WORKLOAD_CLASSES[request.workload_class],
        model=request.model,
        labels=dict(request.labels),
        no_wait=request.no_wait,
        on_failure=_FAILURE_POLICIES[request.on_failure],
        worker=worker_request(request.worker) if request.HasField("worker") else None,
    )


def worker_request(worker: types_pb2.WorkerSpec) -> WorkerRequest:
    if not worker.template:
        raise InvalidArgument("worker.template is required when worker is set")
    return WorkerRequest(template=worker.template, args=dict(worker.args), env=dict(worker.env))


WORKER_STATES: dict[types_pb2.WorkerState, str] = {
    types_pb2.WORKER_STATE_STARTING: "starting",
    types_pb2.WORKER_STATE_READY: "ready",
    types_pb2.WORKER_STATE_RESTARTING: "restarting",
    types_pb2.WORKER_STATE_EXITED: "exited",
    types_pb2.WORKER_STATE_FAILED: "failed",
    types_pb2.WORKER_STATE_STOPPED: "stopped",
    types_pb2.WORKER_STATE_CHECKPOINTING: "checkpointing",
}
_WORKER_STATE_ENUMS = {v: k for k, v in WORKER_STATES.items()}


def worker_reports(statuses: Iterable[types_pb2.WorkerStatus]) -> list[WorkerReport]:
    return [
        WorkerReport(
            allocation_id=s.allocation_id,
            rank=s.rank,
            node=s.node,
            state=WORKER_STATES.get(s.state, "unspecified"),
            pid=s.pid,
            exit_code=s.exit_code,
            reason=s.reason,
            restarts=s.restarts,
        )
        for s in statuses
    ]


def _worker_status(status: dict[str, Any], allocation_id: str) -> types_pb2.WorkerStatus:
    updated = status.get("updated_at")
    return types_pb2.WorkerStatus(
        allocation_id=allocation_id,
        rank=status["rank"],
        node=status.get("node", ""),
        state=_WORKER_STATE_ENUMS.get(status.get("state", ""), types_pb2.WORKER_STATE_UNSPECIFIED),
        pid=status.get("pid", 0),
        exit_code=status.get("exit_code", 0),
        reason=status.get("reason", ""),
        restarts=status.get("restarts", 0),
        updated_at=timestamp(datetime.fromisoformat(updated)) if updated else None,
    )


def log_chunk(chunk: agents_pb2.LogChunk) -> LogChunk:
    return LogChunk(chunk.request_id, chunk.data, chunk.eof, chunk.error)


def event_message(event: AllocationEvent) -> types_pb2.AllocationEvent:
    return types_pb2.AllocationEvent(
        seq=event.seq,
        state=_ALLOCATION_STATE_ENUMS[event.state],
        message=event.message,
        at=timestamp(event.at),
        reason=event.reason,
        deadline=timestamp(event.deadline),
    )


def allocation_message(record: AllocationRecord) -> types_pb2.Allocation:
    message = types_pb2.Allocation(
        id=record.id,
        tenant=record.tenant,
        request_id=record.request_id,
        state=_ALLOCATION_STATE_ENUMS[record.state],
        gpu_models=record.gpu_models,
        priority_class=record.priority_class,
        workload_class=_WORKLOAD_CLASS_ENUMS.get(
            record.workload_class, types_pb2.WORKLOAD_CLASS_UNSPECIFIED
        ),
        model=record.model,
        labels=record.labels,
        # Bindings are stored in rank order; older rows carry no "rank" key. A
        # requeued allocation keeps its last bindings in its row (its nodes stay
        # held for its preemptor: store.reserved_nodes) but holds no GPU while it
        # waits, so callers see none until it is placed again.
        bindings=[]
        if record.state == "pending"
        else [types_pb2.GpuBinding(**{"rank": i, **b}) for i, b in enumerate(record.bindings)],
        pending_reasons=[types_pb2.PendingReason(**r) for r in record.pending_reasons],
        unschedulable=record.unschedulable,
        created_at=timestamp(record.created_at),
        updated_at=timestamp(record.updated_at),
        events=[event_message(e) for e in record.events],
        message=record.message,
        on_failure=_FAILURE_POLICY_ENUMS[record.on_failure],
        checkpoint_uri=record.checkpoint_uri,
        last_checkpoint_at=timestamp(record.last_checkpoint_at),
        resume_from=record.resume_from,
        preemption_deadline=timestamp(record.preemption_deadline),
        preempted_for=record.preempted_for,
        preemption_count=record.preemption_count,
        workers=[_worker_status(w, record.id) for w in record.workers],
        worker_generation=record.worker_generation,
    )
    if record.layout:
        message.layout.CopyFrom(types_pb2.ParallelLayout(**record.layout))
    if record.model_spec:
        message.model_spec.CopyFrom(types_pb2.ModelSpec(**record.model_spec))
    if record.layout_choice:
        message.layout_choice.CopyFrom(types_pb2.LayoutChoice(**record.layout_choice))
    if record.worker is not None:
        message.worker.template = record.worker["template"]
        message.worker.args.update(record.worker.get("args", {}))
        message.worker.env.update(record.worker.get("env", {}))
    if record.rendezvous_port:
        message.rendezvous.master_addr = record.rendezvous_addr
        message.rendezvous.master_port = record.rendezvous_port
    if record.kind == "whole":
        message.whole.count = record.gpu_count
    elif record.kind == "fraction":
        message.fraction.milli_gpu = record.milli
        message.fraction.memory_mib = record.memory_mib
    else:
        message.mig.profile = record.mig_profile
    return message


def _slot_map(gpu: GpuRecord) -> str:
    if not gpu.mig_enabled:
        return ""
    return render_slot_map(MigInstance(i.profile, i.start, i.size) for i in gpu.mig_instances)


def _compute_slices(gpu: GpuRecord, instance: MigInstanceRecord) -> int:
    profile = CATALOGUE[gpu.model].mig_profile(instance.profile)
    return profile.compute_slices if profile else 0


def gpu_message(gpu: GpuRecord) -> types_pb2.Gpu:
    used_milli, used_memory = gpu.used_milli, gpu.used_memory_mib
    if gpu.mig_enabled:
        # MIG instances claim memory slices, not counters: report them as such.
        used_slices = sum(i.size for i in gpu.mig_instances)
        used_memory = gpu.memory_mib * used_slices // 8
        used_milli = 1000 * sum(_compute_slices(gpu, i) for i in gpu.mig_instances) // 7
    return types_pb2.Gpu(
        uuid=gpu.uuid,
        node=gpu.node,
        index=gpu.index,
        model=gpu.model,
        memory_mib=gpu.memory_mib,
        mig_enabled=gpu.mig_enabled,
        health=_GPU_HEALTH.get(gpu.health, types_pb2.GPU_HEALTH_UNSPECIFIED),
        health_reasons=gpu.health_reasons,
        used_milli=used_milli,
        used_memory_mib=used_memory,
        free_milli=1000 - used_milli,
        free_memory_mib=gpu.memory_mib - used_memory,
        mig_instances=[
            types_pb2.MigInstance(
                profile=i.profile, start=i.start, size=i.size, allocation_id=i.allocation_id
            )
            for i in gpu.mig_instances
        ],
        mig_slot_map=_slot_map(gpu),
        nvlink_peers=gpu.nvlink_peers,
        pci_bus_id=gpu.pci_bus_id,
        allocation_count=gpu.allocation_count,
    )


def node_message(node: NodeRecord, with_gpus: bool = False) -> types_pb2.Node:
    models = sorted({g.model for g in node.gpus})
    free = sum(
        1
        for g in node.gpus
        if g.allocation_count == 0 and g.health != "unhealthy" and not g.mig_enabled
    )
    return types_pb2.Node(
        name=node.name,
        hostname=node.hostname,
        state=_NODE_STATES[node.state],
        labels=node.labels,
        last_heartbeat_at=timestamp(node.last_heartbeat_at),
        registered_at=timestamp(node.registered_at),
        gpu_count=len(node.gpus),
        free_gpus=free,
        gpu_models=models,
        allocation_count=node.allocation_count,
        gpus=[gpu_message(g) for g in node.gpus] if with_gpus else [],
    )


def node_state(name: str) -> types_pb2.NodeState:
    return _NODE_STATES[name]


def gpu_specs(request: agents_pb2.RegisterNodeRequest) -> list[GpuSpecInput]:
    return [
        GpuSpecInput(
            uuid=g.uuid,
            index=g.index,
            model=g.model,
            memory_mib=g.memory_mib,
            mig_enabled=g.mig_enabled,
            nvlink_peers=tuple(g.nvlink_peers),
            pci_bus_id=g.pci_bus_id,
        )
        for g in request.gpus
    ]


def catalogue_response(models: list[GpuModel]) -> admin_pb2.GetCatalogueResponse:
    return admin_pb2.GetCatalogueResponse(
        models=[
            types_pb2.GpuModel(
                name=m.name,
                generation=m.generation,
                memory_mib=m.memory_mib,
                memory_bandwidth_gbps=m.memory_bandwidth_gbps,
                bf16_tflops=m.bf16_tflops,
                nvlink_gbps=m.nvlink_gbps,
                throughput_weight=m.throughput_weight,
                mig_capable=m.mig_capable,
                mig_profiles=[
                    types_pb2.MigProfile(
                        name=p.name,
                        compute_slices=p.compute_slices,
                        memory_slices=p.memory_slices,
                        memory_mib=p.memory_mib,
                        max_count=p.max_count,
                        valid_starts=p.valid_starts,
                    )
                    for p in m.mig_profiles
                ],
            )
            for m in models
        ]
    )


def health_reports(reports: Iterable[agents_pb2.GpuHealthReport]) -> list[GpuHealthReport]:
    return [
        GpuHealthReport(
            uuid=r.uuid,
            health=_GPU_HEALTH_NAMES.get(r.health, ""),
            reasons=tuple(r.reasons),
            temperature_c=r.temperature_c,
            power_mw=r.power_mw,
            utilization_pct=r.utilization_pct,
            memory_used_mib=r.memory_used_mib,
            recent_xids=tuple(r.recent_xids),
        )
        for r in reports
    ]


def agent_hello(hello: agents_pb2.AgentHello) -> AgentHello:
    node = hello.node
    return AgentHello(
        node=node.name,
        hostname=node.hostname or node.name,
        labels=dict(node.labels),
        gpus=gpu_specs(node),
        health=health_reports(hello.health),
        running_allocation_ids=tuple(hello.running_allocation_ids),
        agent_version=hello.agent_version,
        simulated=hello.simulated,
        residency=tuple(residency(hello.residency)),
        workers=tuple(worker_reports(hello.workers)),
    )


_TIER_NAMES = {
    types_pb2.RESIDENCY_TIER_GPU: "gpu",
    types_pb2.RESIDENCY_TIER_HOST_RAM: "host_ram",
    types_pb2.RESIDENCY_TIER_LOCAL_DISK: "local_disk",
}
_TIERS = {name: value for value, name in _TIER_NAMES.items()}


def residency(entries: Iterable[types_pb2.ModelResidency]) -> list[ResidentModel]:
    """An unspecified tier becomes "" and is rejected by validate_residency."""
    return [
        ResidentModel(
            model=e.model,
            tier=_TIER_NAMES.get(e.tier, ""),
            gpu_uuid=e.gpu_uuid,
            standby=e.standby,
            size_bytes=e.size_bytes,
        )
        for e in entries
    ]


def heartbeat_residency(request: agents_pb2.HeartbeatRequest) -> list[ResidentModel] | None:
    """The reported residency, or None when this heartbeat does not report it."""
    return residency(request.residency) if request.residency_reported else None


def model_info_message(info: ModelInfo) -> admin_pb2.ModelInfo:
    return admin_pb2.ModelInfo(
        model=info.model,
        size_bytes=info.size_bytes,
        placements=[
            admin_pb2.ModelPlacement(
                node=p.node, gpu_uuid=p.gpu_uuid, tier=_TIERS[p.tier], standby=p.standby
            )
            for p in info.placements
        ],
        cold_start_seconds=info.cold_start_seconds,
    )


def scheduler_message(message: OutboundMessage) -> agents_pb2.SchedulerMessage:
    if isinstance(message, HeartbeatAck):
        return agents_pb2.SchedulerMessage(heartbeat_ack=agents_pb2.HeartbeatAck(seq=message.seq))
    if isinstance(message, LogRequest):
        return agents_pb2.SchedulerMessage(
            log_request=agents_pb2.LogRequest(
                request_id=message.request_id,
                allocation_id=message.allocation_id,
                rank=message.rank,
                tail_bytes=message.tail_bytes,
                follow=message.follow,
                cancel=message.cancel,
            )
        )
    if isinstance(message, FaultCommand):
        return agents_pb2.SchedulerMessage(
            fault=agents_pb2.FaultCommand(
                gpu_index=message.gpu_index, fault=message.fault, clear=message.clear
            )
        )
    return agents_pb2.SchedulerMessage(
        desired=agents_pb2.DesiredState(
            node=message.node,
            node_state=_NODE_STATES[message.node_state],
            allocations=[allocation_message(a) for a in message.allocations],
            heartbeat_interval_ms=message.heartbeat_interval_ms,
            self_fence_after_ms=message.self_fence_after_ms,
            self_fence_kill_after_ms=message.self_fence_kill_after_ms,
        )
    )
