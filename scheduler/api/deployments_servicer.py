"""The Deployments gRPC service: wire <-> domain, then the use case."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import grpc

from gpupool.v1 import agents_pb2, deployments_pb2_grpc, types_pb2
from gpupool.v1 import deployments_pb2 as pb
from scheduler.api.converters import timestamp
from scheduler.api.interceptor import current_caller
from scheduler.domain.deployments import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    Behavior,
    DeploymentSpec,
    Variant,
)
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.priorities import DEFAULT_PRIORITY_CLASS
from scheduler.services.deployments import DeploymentService, DeploymentView
from scheduler.store.deployments import EngineSample

REPLICA_STATES = {
    "starting": pb.REPLICA_STATE_STARTING,
    "ready": pb.REPLICA_STATE_READY,
    "standby": pb.REPLICA_STATE_STANDBY,
    "draining": pb.REPLICA_STATE_DRAINING,
    "stopped": pb.REPLICA_STATE_STOPPED,
}
_WORKLOAD_CLASSES: dict[types_pb2.WorkloadClass, str] = {
    types_pb2.WORKLOAD_CLASS_UNSPECIFIED: "unspecified",
    types_pb2.WORKLOAD_CLASS_LATENCY_CRITICAL: "latency-critical",
    types_pb2.WORKLOAD_CLASS_THROUGHPUT: "throughput",
    types_pb2.WORKLOAD_CLASS_BATCH: "batch",
    types_pb2.WORKLOAD_CLASS_LONG_CONTEXT: "long-context",
    types_pb2.WORKLOAD_CLASS_SMALL_MODEL: "small-model",
}
_WORKLOAD_CLASS_ENUMS = {v: k for k, v in _WORKLOAD_CLASSES.items()}
DEPLOYMENT_STATES = {
    "active": pb.DEPLOYMENT_STATE_ACTIVE,
    "deleting": pb.DEPLOYMENT_STATE_DELETING,
    "deleted": pb.DEPLOYMENT_STATE_DELETED,
}


def _behavior(wire: pb.ScalingBehavior, default: Behavior) -> Behavior:
    """0 in a field: that field's default (proto3 has no absent scalars here)."""
    return Behavior(
        wire.stabilization_s or default.stabilization_s,
        wire.max_step or default.max_step,
        wire.period_s or default.period_s,
    )


def deployment_spec(wire: pb.DeploymentSpec) -> DeploymentSpec:
    return DeploymentSpec(
        name=wire.name,
        tenant=wire.tenant,
        model=wire.model,
        engine=wire.engine,
        params_billion=wire.params_billion,
        variants=tuple(
            Variant(v.name, v.dtype, tuple(v.gpu_models), v.tp, v.engine_model)
            for v in wire.variants
        ),
        engine_args=dict(wire.engine_args),
        workload_class=workload_class_name(wire.workload_class),
        priority_class=wire.priority_class or DEFAULT_PRIORITY_CLASS,
        min_replicas=wire.min_replicas,
        max_replicas=wire.max_replicas,
        target_kv=wire.target_kv_cache_usage,
        scale_up=_behavior(wire.scale_up, DEFAULT_SCALE_UP),
        scale_down=_behavior(wire.scale_down, DEFAULT_SCALE_DOWN),
        standby_replicas=wire.standby_replicas,
        cron_minimums=dict(wire.cron_minimums),
        advisory=wire.advisory,
        scale_to_zero=wire.scale_to_zero,
        context_tokens=wire.context_tokens,
        concurrent_sequences=wire.concurrent_sequences,
        metrics_window_s=wire.metrics_window_s,
        routing=wire.routing,
    )


def spec_message(spec: DeploymentSpec) -> pb.DeploymentSpec:
    return pb.DeploymentSpec(
        name=spec.name,
        tenant=spec.tenant,
        model=spec.model,
        params_billion=spec.params_billion,
        variants=[
            pb.DeploymentVariant(
                name=v.name,
                dtype=v.dtype,
                gpu_models=v.gpu_models,
                tp=v.tp,
                engine_model=v.engine_model,
            )
            for v in spec.variants
        ],
        engine=spec.engine,
        engine_args=dict(spec.engine_args),
        workload_class=workload_class_enum(spec.workload_class),
        priority_class=spec.priority_class,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        target_kv_cache_usage=spec.target_kv,
        scale_up=pb.ScalingBehavior(
            stabilization_s=spec.scale_up.stabilization_s,
            max_step=spec.scale_up.max_step,
            period_s=spec.scale_up.period_s,
        ),
        scale_down=pb.ScalingBehavior(
            stabilization_s=spec.scale_down.stabilization_s,
            max_step=spec.scale_down.max_step,
            period_s=spec.scale_down.period_s,
        ),
        standby_replicas=spec.standby_replicas,
        cron_minimums=dict(spec.cron_minimums),
        advisory=spec.advisory,
        scale_to_zero=spec.scale_to_zero,
        context_tokens=spec.context_tokens,
        concurrent_sequences=spec.concurrent_sequences,
        metrics_window_s=spec.metrics_window_s,
        routing=spec.routing,
    )


def workload_class_name(value: types_pb2.WorkloadClass) -> str:
    if value not in _WORKLOAD_CLASSES:
        raise InvalidArgument(f"spec.workload_class: unknown value {value}")
    return _WORKLOAD_CLASSES[value]


def workload_class_enum(name: str) -> types_pb2.WorkloadClass:
    return _WORKLOAD_CLASS_ENUMS.get(name, types_pb2.WORKLOAD_CLASS_UNSPECIFIED)


def replica_message(row: Mapping[str, Any]) -> pb.Replica:
    message = pb.Replica(
        id=row["id"],
        deployment=row["deployment"],
        tenant=row["tenant"],
        allocation_id=row["allocation_id"],
        state=REPLICA_STATES[row["state"]],
        endpoint=row["endpoint"],
        node=row["node"],
        gpu_model=row["gpu_model"],
        gpu_count=row["gpu_count"],
        model=row["model"],
        variant=row["variant"],
        created_at=timestamp(row["created_at"]),
        ready_at=timestamp(row["ready_at"]),
        state_changed_at=timestamp(row["state_changed_at"]),
        reason=row["reason"],
        expected_cold_start_s=row["expected_cold_start_s"],
        routing=row.get("routing") or "",
    )
    if row.get("observed_at") is not None:
        message.metrics.CopyFrom(
            pb.ReplicaMetrics(
                kv_cache_usage=row["kv_cache_usage"],
                num_requests_running=row["num_requests_running"],
                num_requests_waiting=row["num_requests_waiting"],
                prompt_tokens_total=row["prompt_tokens_total"],
                generation_tokens_total=row["generation_tokens_total"],
                observed_at=timestamp(row["observed_at"]),
            )
        )
    return message


def deployment_message(view: DeploymentView) -> pb.Deployment:
    row = view.row
    return pb.Deployment(
        id=row["id"],
        spec=spec_message(view.spec),
        state=DEPLOYMENT_STATES[row["state"]],
        paused=row["paused"],
        desired_replicas=row["desired_replicas"],
        manual=row["manual_replicas"] is not None,
        replicas=[replica_message(r) for r in view.replicas],
        last_decision=row["last_decision"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )


def event_message(row: Mapping[str, Any]) -> pb.DeploymentEvent:
    return pb.DeploymentEvent(
        seq=row["seq"],
        at=timestamp(row["at"]),
        kind=row["kind"],
        message=row["message"],
        from_replicas=row["from_replicas"],
        to_replicas=row["to_replicas"],
    )


class DeploymentsServicer(deployments_pb2_grpc.DeploymentsServicer):
    def __init__(self, deployments: DeploymentService) -> None:
        self._deployments = deployments

    def Create(
        self, request: pb.CreateDeploymentRequest, context: grpc.ServicerContext
    ) -> pb.CreateDeploymentResponse:
        view = self._deployments.create(current_caller(), deployment_spec(request.spec))
        return pb.CreateDeploymentResponse(deployment=deployment_message(view))

    def Get(
        self, request: pb.GetDeploymentRequest, context: grpc.ServicerContext
    ) -> pb.GetDeploymentResponse:
        view = self._deployments.get(current_caller(), request.name, request.tenant)
        return pb.GetDeploymentResponse(deployment=deployment_message(view))

    def List(
        self, request: pb.ListDeploymentsRequest, context: grpc.ServicerContext
    ) -> pb.ListDeploymentsResponse:
        views = self._deployments.list_all(
            current_caller(), request.tenant, request.include_deleted
        )
        return pb.ListDeploymentsResponse(deployments=[deployment_message(v) for v in views])

    def Scale(
        self, request: pb.ScaleDeploymentRequest, context: grpc.ServicerContext
    ) -> pb.ScaleDeploymentResponse:
        view = self._deployments.scale(
            current_caller(),
            request.name,
            request.tenant,
            request.replicas if request.HasField("replicas") else None,
            request.min_replicas if request.HasField("min_replicas") else None,
            request.max_replicas if request.HasField("max_replicas") else None,
            request.autoscale,
        )
        return pb.ScaleDeploymentResponse(deployment=deployment_message(view))

    def Pause(
        self, request: pb.DeploymentActionRequest, context: grpc.ServicerContext
    ) -> pb.DeploymentActionResponse:
        view = self._deployments.set_paused(current_caller(), request.name, request.tenant, True)
        return pb.DeploymentActionResponse(deployment=deployment_message(view))

    def Resume(
        self, request: pb.DeploymentActionRequest, context: grpc.ServicerContext
    ) -> pb.DeploymentActionResponse:
        view = self._deployments.set_paused(current_caller(), request.name, request.tenant, False)
        return pb.DeploymentActionResponse(deployment=deployment_message(view))

    def Delete(
        self, request: pb.DeploymentActionRequest, context: grpc.ServicerContext
    ) -> pb.DeploymentActionResponse:
        view = self._deployments.delete(current_caller(), request.name, request.tenant)
        return pb.DeploymentActionResponse(deployment=deployment_message(view))

    def History(
        self, request: pb.DeploymentHistoryRequest, context: grpc.ServicerContext
    ) -> pb.DeploymentHistoryResponse:
        rows = self._deployments.history(
            current_caller(), request.name, request.tenant, request.limit
        )
        return pb.DeploymentHistoryResponse(events=[event_message(r) for r in rows])

    def WatchReplicas(
        self, request: pb.WatchReplicasRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.ReplicaEvent]:
        updates = self._deployments.watch_replicas(
            current_caller(), request.deployment, request.tenant, context.is_active
        )
        for row in updates:
            if row is None:
                yield pb.ReplicaEvent(synced=True)
            else:
                yield pb.ReplicaEvent(replica=replica_message(row))


def engine_samples(report: agents_pb2.EngineMetricsReport) -> list[EngineSample]:
    """An agent's scrapes, the failed ones left out (no figure beats a zero)."""
    return [
        EngineSample(
            allocation_id=m.allocation_id,
            kv_cache_usage=min(max(m.kv_cache_usage, 0.0), 1.0),
            num_requests_running=m.num_requests_running,
            num_requests_waiting=m.num_requests_waiting,
            prompt_tokens_total=m.prompt_tokens_total,
            generation_tokens_total=m.generation_tokens_total,
        )
        for m in report.engines
        if m.ok and m.allocation_id
    ]
