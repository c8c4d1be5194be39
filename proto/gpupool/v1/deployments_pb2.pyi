import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from gpupool.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DeploymentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DEPLOYMENT_STATE_UNSPECIFIED: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_ACTIVE: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_DELETING: _ClassVar[DeploymentState]
    DEPLOYMENT_STATE_DELETED: _ClassVar[DeploymentState]

class ReplicaState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REPLICA_STATE_UNSPECIFIED: _ClassVar[ReplicaState]
    REPLICA_STATE_STARTING: _ClassVar[ReplicaState]
    REPLICA_STATE_READY: _ClassVar[ReplicaState]
    REPLICA_STATE_STANDBY: _ClassVar[ReplicaState]
    REPLICA_STATE_DRAINING: _ClassVar[ReplicaState]
    REPLICA_STATE_STOPPED: _ClassVar[ReplicaState]
DEPLOYMENT_STATE_UNSPECIFIED: DeploymentState
DEPLOYMENT_STATE_ACTIVE: DeploymentState
DEPLOYMENT_STATE_DELETING: DeploymentState
DEPLOYMENT_STATE_DELETED: DeploymentState
REPLICA_STATE_UNSPECIFIED: ReplicaState
REPLICA_STATE_STARTING: ReplicaState
REPLICA_STATE_READY: ReplicaState
REPLICA_STATE_STANDBY: ReplicaState
REPLICA_STATE_DRAINING: ReplicaState
REPLICA_STATE_STOPPED: ReplicaState

class DeploymentVariant(_message.Message):
    __slots__ = ("name", "dtype", "gpu_models", "tp", "engine_model")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    TP_FIELD_NUMBER: _ClassVar[int]
    ENGINE_MODEL_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    tp: int
    engine_model: str
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., gpu_models: _Optional[_Iterable[str]] = ..., tp: _Optional[int] = ..., engine_model: _Optional[str] = ...) -> None: ...

class ScalingBehavior(_message.Message):
    __slots__ = ("stabilization_s", "max_step", "period_s")
    STABILIZATION_S_FIELD_NUMBER: _ClassVar[int]
    MAX_STEP_FIELD_NUMBER: _ClassVar[int]
    PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    stabilization_s: int
    max_step: int
    period_s: int
    def __init__(self, stabilization_s: _Optional[int] = ..., max_step: _Optional[int] = ..., period_s: _Optional[int] = ...) -> None: ...

class DeploymentSpec(_message.Message):
    __slots__ = ("name", "tenant", "model", "params_billion", "variants", "engine", "engine_args", "workload_class", "priority_class", "min_replicas", "max_replicas", "target_kv_cache_usage", "scale_up", "scale_down", "standby_replicas", "cron_minimums", "advisory", "scale_to_zero", "context_tokens", "concurrent_sequences", "metrics_window_s", "routing")
    class EngineArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class CronMinimumsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_BILLION_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_ARGS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_CLASS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TARGET_KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    SCALE_UP_FIELD_NUMBER: _ClassVar[int]
    SCALE_DOWN_FIELD_NUMBER: _ClassVar[int]
    STANDBY_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    CRON_MINIMUMS_FIELD_NUMBER: _ClassVar[int]
    ADVISORY_FIELD_NUMBER: _ClassVar[int]
    SCALE_TO_ZERO_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    METRICS_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    model: str
    params_billion: float
    variants: _containers.RepeatedCompositeFieldContainer[DeploymentVariant]
    engine: str
    engine_args: _containers.ScalarMap[str, str]
    workload_class: _types_pb2.WorkloadClass
    priority_class: str
    min_replicas: int
    max_replicas: int
    target_kv_cache_usage: float
    scale_up: ScalingBehavior
    scale_down: ScalingBehavior
    standby_replicas: int
    cron_minimums: _containers.ScalarMap[str, int]
    advisory: bool
    scale_to_zero: bool
    context_tokens: int
    concurrent_sequences: int
    metrics_window_s: int
    routing: str
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., model: _Optional[str] = ..., params_billion: _Optional[float] = ..., variants: _Optional[_Iterable[_Union[DeploymentVariant, _Mapping]]] = ..., engine: _Optional[str] = ..., engine_args: _Optional[_Mapping[str, str]] = ..., workload_class: _Optional[_Union[_types_pb2.WorkloadClass, str]] = ..., priority_class: _Optional[str] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., target_kv_cache_usage: _Optional[float] = ..., scale_up: _Optional[_Union[ScalingBehavior, _Mapping]] = ..., scale_down: _Optional[_Union[ScalingBehavior, _Mapping]] = ..., standby_replicas: _Optional[int] = ..., cron_minimums: _Optional[_Mapping[str, int]] = ..., advisory: _Optional[bool] = ..., scale_to_zero: _Optional[bool] = ..., context_tokens: _Optional[int] = ..., concurrent_sequences: _Optional[int] = ..., metrics_window_s: _Optional[int] = ..., routing: _Optional[str] = ...) -> None: ...

class ReplicaMetrics(_message.Message):
    __slots__ = ("kv_cache_usage", "num_requests_running", "num_requests_waiting", "prompt_tokens_total", "generation_tokens_total", "observed_at")
    KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    NUM_REQUESTS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    NUM_REQUESTS_WAITING_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    kv_cache_usage: float
    num_requests_running: int
    num_requests_waiting: int
    prompt_tokens_total: int
    generation_tokens_total: int
    observed_at: _timestamp_pb2.Timestamp
    def __init__(self, kv_cache_usage: _Optional[float] = ..., num_requests_running: _Optional[int] = ..., num_requests_waiting: _Optional[int] = ..., prompt_tokens_total: _Optional[int] = ..., generation_tokens_total: _Optional[int] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Replica(_message.Message):
    __slots__ = ("id", "deployment", "tenant", "allocation_id", "state", "endpoint", "node", "gpu_model", "gpu_count", "model", "variant", "metrics", "created_at", "ready_at", "state_changed_at", "reason", "expected_cold_start_s", "routing")
    ID_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VARIANT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    READY_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COLD_START_S_FIELD_NUMBER: _ClassVar[int]
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    id: str
    deployment: str
    tenant: str
    allocation_id: str
    state: ReplicaState
    endpoint: str
    node: str
    gpu_model: str
    gpu_count: int
    model: str
    variant: str
    metrics: ReplicaMetrics
    created_at: _timestamp_pb2.Timestamp
    ready_at: _timestamp_pb2.Timestamp
    state_changed_at: _timestamp_pb2.Timestamp
    reason: str
    expected_cold_start_s: float
    routing: str
    def __init__(self, id: _Optional[str] = ..., deployment: _Optional[str] = ..., tenant: _Optional[str] = ..., allocation_id: _Optional[str] = ..., state: _Optional[_Union[ReplicaState, str]] = ..., endpoint: _Optional[str] = ..., node: _Optional[str] = ..., gpu_model: _Optional[str] = ..., gpu_count: _Optional[int] = ..., model: _Optional[str] = ..., variant: _Optional[str] = ..., metrics: _Optional[_Union[ReplicaMetrics, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ready_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., state_changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., expected_cold_start_s: _Optional[float] = ..., routing: _Optional[str] = ...) -> None: ...

class Deployment(_message.Message):
    __slots__ = ("id", "spec", "state", "paused", "desired_replicas", "manual", "replicas", "last_decision", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MANUAL_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    LAST_DECISION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: DeploymentSpec
    state: DeploymentState
    paused: bool
    desired_replicas: int
    manual: bool
    replicas: _containers.RepeatedCompositeFieldContainer[Replica]
    last_decision: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ..., state: _Optional[_Union[DeploymentState, str]] = ..., paused: _Optional[bool] = ..., desired_replicas: _Optional[int] = ..., manual: _Optional[bool] = ..., replicas: _Optional[_Iterable[_Union[Replica, _Mapping]]] = ..., last_decision: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DeploymentEvent(_message.Message):
    __slots__ = ("seq", "at", "kind", "message", "from_replicas", "to_replicas")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FROM_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    TO_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: _timestamp_pb2.Timestamp
    kind: str
    message: str
    from_replicas: int
    to_replicas: int
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., message: _Optional[str] = ..., from_replicas: _Optional[int] = ..., to_replicas: _Optional[int] = ...) -> None: ...

class CreateDeploymentRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: DeploymentSpec
    def __init__(self, spec: _Optional[_Union[DeploymentSpec, _Mapping]] = ...) -> None: ...

class CreateDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class GetDeploymentRequest(_message.Message):
    __slots__ = ("name", "tenant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class GetDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class ListDeploymentsRequest(_message.Message):
    __slots__ = ("tenant", "include_deleted")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DELETED_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    include_deleted: bool
    def __init__(self, tenant: _Optional[str] = ..., include_deleted: _Optional[bool] = ...) -> None: ...

class ListDeploymentsResponse(_message.Message):
    __slots__ = ("deployments",)
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    deployments: _containers.RepeatedCompositeFieldContainer[Deployment]
    def __init__(self, deployments: _Optional[_Iterable[_Union[Deployment, _Mapping]]] = ...) -> None: ...

class ScaleDeploymentRequest(_message.Message):
    __slots__ = ("name", "tenant", "replicas", "min_replicas", "max_replicas", "autoscale")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MIN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    AUTOSCALE_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    replicas: int
    min_replicas: int
    max_replicas: int
    autoscale: bool
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., replicas: _Optional[int] = ..., min_replicas: _Optional[int] = ..., max_replicas: _Optional[int] = ..., autoscale: _Optional[bool] = ...) -> None: ...

class ScaleDeploymentResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class DeploymentActionRequest(_message.Message):
    __slots__ = ("name", "tenant")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class DeploymentActionResponse(_message.Message):
    __slots__ = ("deployment",)
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    deployment: Deployment
    def __init__(self, deployment: _Optional[_Union[Deployment, _Mapping]] = ...) -> None: ...

class DeploymentHistoryRequest(_message.Message):
    __slots__ = ("name", "tenant", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    tenant: str
    limit: int
    def __init__(self, name: _Optional[str] = ..., tenant: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DeploymentHistoryResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[DeploymentEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[DeploymentEvent, _Mapping]]] = ...) -> None: ...

class WatchReplicasRequest(_message.Message):
    __slots__ = ("deployment", "tenant")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    tenant: str
    def __init__(self, deployment: _Optional[str] = ..., tenant: _Optional[str] = ...) -> None: ...

class ReplicaEvent(_message.Message):
    __slots__ = ("replica", "synced")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    replica: Replica
    synced: bool
    def __init__(self, replica: _Optional[_Union[Replica, _Mapping]] = ..., synced: _Optional[bool] = ...) -> None: ...
