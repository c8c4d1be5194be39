import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkloadClass(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKLOAD_CLASS_UNSPECIFIED: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_LATENCY_CRITICAL: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_THROUGHPUT: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_BATCH: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_LONG_CONTEXT: _ClassVar[WorkloadClass]
    WORKLOAD_CLASS_SMALL_MODEL: _ClassVar[WorkloadClass]

class AllocationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ALLOCATION_STATE_UNSPECIFIED: _ClassVar[AllocationState]
    ALLOCATION_STATE_PENDING: _ClassVar[AllocationState]
    ALLOCATION_STATE_PLACED: _ClassVar[AllocationState]
    ALLOCATION_STATE_RUNNING: _ClassVar[AllocationState]
    ALLOCATION_STATE_PREEMPTING: _ClassVar[AllocationState]
    ALLOCATION_STATE_RELEASED: _ClassVar[AllocationState]
    ALLOCATION_STATE_FAILED: _ClassVar[AllocationState]

class FailurePolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FAILURE_POLICY_UNSPECIFIED: _ClassVar[FailurePolicy]
    FAILURE_POLICY_REQUEUE: _ClassVar[FailurePolicy]
    FAILURE_POLICY_FAIL: _ClassVar[FailurePolicy]

class NodeState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NODE_STATE_UNSPECIFIED: _ClassVar[NodeState]
    NODE_STATE_READY: _ClassVar[NodeState]
    NODE_STATE_CORDONED: _ClassVar[NodeState]
    NODE_STATE_DRAINING: _ClassVar[NodeState]
    NODE_STATE_DRAINED: _ClassVar[NodeState]
    NODE_STATE_UNREACHABLE: _ClassVar[NodeState]

class GpuHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    GPU_HEALTH_UNSPECIFIED: _ClassVar[GpuHealth]
    GPU_HEALTH_HEALTHY: _ClassVar[GpuHealth]
    GPU_HEALTH_DEGRADED: _ClassVar[GpuHealth]
    GPU_HEALTH_UNHEALTHY: _ClassVar[GpuHealth]

class WorkerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_STATE_UNSPECIFIED: _ClassVar[WorkerState]
    WORKER_STATE_STARTING: _ClassVar[WorkerState]
    WORKER_STATE_READY: _ClassVar[WorkerState]
    WORKER_STATE_RESTARTING: _ClassVar[WorkerState]
    WORKER_STATE_EXITED: _ClassVar[WorkerState]
    WORKER_STATE_FAILED: _ClassVar[WorkerState]
    WORKER_STATE_STOPPED: _ClassVar[WorkerState]
    WORKER_STATE_CHECKPOINTING: _ClassVar[WorkerState]

class ResidencyTier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESIDENCY_TIER_UNSPECIFIED: _ClassVar[ResidencyTier]
    RESIDENCY_TIER_GPU: _ClassVar[ResidencyTier]
    RESIDENCY_TIER_HOST_RAM: _ClassVar[ResidencyTier]
    RESIDENCY_TIER_LOCAL_DISK: _ClassVar[ResidencyTier]
WORKLOAD_CLASS_UNSPECIFIED: WorkloadClass
WORKLOAD_CLASS_LATENCY_CRITICAL: WorkloadClass
WORKLOAD_CLASS_THROUGHPUT: WorkloadClass
WORKLOAD_CLASS_BATCH: WorkloadClass
WORKLOAD_CLASS_LONG_CONTEXT: WorkloadClass
WORKLOAD_CLASS_SMALL_MODEL: WorkloadClass
ALLOCATION_STATE_UNSPECIFIED: AllocationState
ALLOCATION_STATE_PENDING: AllocationState
ALLOCATION_STATE_PLACED: AllocationState
ALLOCATION_STATE_RUNNING: AllocationState
ALLOCATION_STATE_PREEMPTING: AllocationState
ALLOCATION_STATE_RELEASED: AllocationState
ALLOCATION_STATE_FAILED: AllocationState
FAILURE_POLICY_UNSPECIFIED: FailurePolicy
FAILURE_POLICY_REQUEUE: FailurePolicy
FAILURE_POLICY_FAIL: FailurePolicy
NODE_STATE_UNSPECIFIED: NodeState
NODE_STATE_READY: NodeState
NODE_STATE_CORDONED: NodeState
NODE_STATE_DRAINING: NodeState
NODE_STATE_DRAINED: NodeState
NODE_STATE_UNREACHABLE: NodeState
GPU_HEALTH_UNSPECIFIED: GpuHealth
GPU_HEALTH_HEALTHY: GpuHealth
GPU_HEALTH_DEGRADED: GpuHealth
GPU_HEALTH_UNHEALTHY: GpuHealth
WORKER_STATE_UNSPECIFIED: WorkerState
WORKER_STATE_STARTING: WorkerState
WORKER_STATE_READY: WorkerState
WORKER_STATE_RESTARTING: WorkerState
WORKER_STATE_EXITED: WorkerState
WORKER_STATE_FAILED: WorkerState
WORKER_STATE_STOPPED: WorkerState
WORKER_STATE_CHECKPOINTING: WorkerState
RESIDENCY_TIER_UNSPECIFIED: ResidencyTier
RESIDENCY_TIER_GPU: ResidencyTier
RESIDENCY_TIER_HOST_RAM: ResidencyTier
RESIDENCY_TIER_LOCAL_DISK: ResidencyTier

class WholeGpus(_message.Message):
    __slots__ = ("count",)
    COUNT_FIELD_NUMBER: _ClassVar[int]
    count: int
    def __init__(self, count: _Optional[int] = ...) -> None: ...

class FractionalGpu(_message.Message):
    __slots__ = ("milli_gpu", "memory_mib")
    MILLI_GPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    milli_gpu: int
    memory_mib: int
    def __init__(self, milli_gpu: _Optional[int] = ..., memory_mib: _Optional[int] = ...) -> None: ...

class MigSlice(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: str
    def __init__(self, profile: _Optional[str] = ...) -> None: ...

class GpuBinding(_message.Message):
    __slots__ = ("node", "gpu_uuid", "gpu_index", "gpu_model", "milli_gpu", "memory_mib", "mig_profile", "mig_start", "mig_size", "mig_memory_mib", "rank", "mig_device_uuid")
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    MILLI_GPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MIG_PROFILE_FIELD_NUMBER: _ClassVar[int]
    MIG_START_FIELD_NUMBER: _ClassVar[int]
    MIG_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIG_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    MIG_DEVICE_UUID_FIELD_NUMBER: _ClassVar[int]
    node: str
    gpu_uuid: str
    gpu_index: int
    gpu_model: str
    milli_gpu: int
    memory_mib: int
    mig_profile: str
    mig_start: int
    mig_size: int
    mig_memory_mib: int
    rank: int
    mig_device_uuid: str
    def __init__(self, node: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., gpu_index: _Optional[int] = ..., gpu_model: _Optional[str] = ..., milli_gpu: _Optional[int] = ..., memory_mib: _Optional[int] = ..., mig_profile: _Optional[str] = ..., mig_start: _Optional[int] = ..., mig_size: _Optional[int] = ..., mig_memory_mib: _Optional[int] = ..., rank: _Optional[int] = ..., mig_device_uuid: _Optional[str] = ...) -> None: ...

class ParallelLayout(_message.Message):
    __slots__ = ("tp", "pp", "ep", "cp", "replicas")
    TP_FIELD_NUMBER: _ClassVar[int]
    PP_FIELD_NUMBER: _ClassVar[int]
    EP_FIELD_NUMBER: _ClassVar[int]
    CP_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    tp: int
    pp: int
    ep: int
    cp: int
    replicas: int
    def __init__(self, tp: _Optional[int] = ..., pp: _Optional[int] = ..., ep: _Optional[int] = ..., cp: _Optional[int] = ..., replicas: _Optional[int] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("name", "params_billion", "dtype", "context_tokens", "concurrent_sequences", "memory_utilization")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_BILLION_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CONCURRENT_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    params_billion: float
    dtype: str
    context_tokens: int
    concurrent_sequences: int
    memory_utilization: float
    def __init__(self, name: _Optional[str] = ..., params_billion: _Optional[float] = ..., dtype: _Optional[str] = ..., context_tokens: _Optional[int] = ..., concurrent_sequences: _Optional[int] = ..., memory_utilization: _Optional[float] = ...) -> None: ...

class LayoutChoice(_message.Message):
    __slots__ = ("gpu_model", "tp", "weights_mib", "kv_cache_mib", "explanation")
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    TP_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_MIB_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_MIB_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    gpu_model: str
    tp: int
    weights_mib: int
    kv_cache_mib: int
    explanation: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gpu_model: _Optional[str] = ..., tp: _Optional[int] = ..., weights_mib: _Optional[int] = ..., kv_cache_mib: _Optional[int] = ..., explanation: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkerSpec(_message.Message):
    __slots__ = ("template", "args", "env")
    class ArgsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    template: str
    args: _containers.ScalarMap[str, str]
    env: _containers.ScalarMap[str, str]
    def __init__(self, template: _Optional[str] = ..., args: _Optional[_Mapping[str, str]] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Rendezvous(_message.Message):
    __slots__ = ("master_addr", "master_port")
    MASTER_ADDR_FIELD_NUMBER: _ClassVar[int]
    MASTER_PORT_FIELD_NUMBER: _ClassVar[int]
    master_addr: str
    master_port: int
    def __init__(self, master_addr: _Optional[str] = ..., master_port: _Optional[int] = ...) -> None: ...

class WorkerStatus(_message.Message):
    __slots__ = ("allocation_id", "rank", "node", "state", "pid", "exit_code", "reason", "restarts", "updated_at")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    rank: int
    node: str
    state: WorkerState
    pid: int
    exit_code: int
    reason: str
    restarts: int
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, allocation_id: _Optional[str] = ..., rank: _Optional[int] = ..., node: _Optional[str] = ..., state: _Optional[_Union[WorkerState, str]] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., restarts: _Optional[int] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModelResidency(_message.Message):
    __slots__ = ("model", "tier", "gpu_uuid", "standby", "size_bytes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    model: str
    tier: ResidencyTier
    gpu_uuid: str
    standby: bool
    size_bytes: int
    def __init__(self, model: _Optional[str] = ..., tier: _Optional[_Union[ResidencyTier, str]] = ..., gpu_uuid: _Optional[str] = ..., standby: _Optional[bool] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class PendingReason(_message.Message):
    __slots__ = ("plugin", "reason", "count")
    PLUGIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    plugin: str
    reason: str
    count: int
    def __init__(self, plugin: _Optional[str] = ..., reason: _Optional[str] = ..., count: _Optional[int] = ...) -> None: ...

class AllocationEvent(_message.Message):
    __slots__ = ("seq", "state", "message", "at", "reason", "deadline")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    state: AllocationState
    message: str
    at: _timestamp_pb2.Timestamp
    reason: str
    deadline: _timestamp_pb2.Timestamp
    def __init__(self, seq: _Optional[int] = ..., state: _Optional[_Union[AllocationState, str]] = ..., message: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Allocation(_message.Message):
    __slots__ = ("id", "tenant", "request_id", "state", "whole", "fraction", "mig", "gpu_models", "priority_class", "workload_class", "model", "labels", "bindings", "pending_reasons", "unschedulable", "created_at", "updated_at", "events", "message", "on_failure", "checkpoint_uri", "last_checkpoint_at", "resume_from", "preemption_deadline", "preempted_for", "preemption_count", "layout", "model_spec", "layout_choice", "worker", "rendezvous", "workers", "worker_generation")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MIG_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_CLASS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    BINDINGS_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASONS_FIELD_NUMBER: _ClassVar[int]
    UNSCHEDULABLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECKPOINT_AT_FIELD_NUMBER: _ClassVar[int]
    RESUME_FROM_FIELD_NUMBER: _ClassVar[int]
    PREEMPTION_DEADLINE_FIELD_NUMBER: _ClassVar[int]
    PREEMPTED_FOR_FIELD_NUMBER: _ClassVar[int]
    PREEMPTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_CHOICE_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    RENDEZVOUS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    WORKER_GENERATION_FIELD_NUMBER: _ClassVar[int]
    id: str
    tenant: str
    request_id: str
    state: AllocationState
    whole: WholeGpus
    fraction: FractionalGpu
    mig: MigSlice
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    priority_class: str
    workload_class: WorkloadClass
    model: str
    labels: _containers.ScalarMap[str, str]
    bindings: _containers.RepeatedCompositeFieldContainer[GpuBinding]
    pending_reasons: _containers.RepeatedCompositeFieldContainer[PendingReason]
    unschedulable: bool
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    events: _containers.RepeatedCompositeFieldContainer[AllocationEvent]
    message: str
    on_failure: FailurePolicy
    checkpoint_uri: str
    last_checkpoint_at: _timestamp_pb2.Timestamp
    resume_from: str
    preemption_deadline: _timestamp_pb2.Timestamp
    preempted_for: str
    preemption_count: int
    layout: ParallelLayout
    model_spec: ModelSpec
    layout_choice: LayoutChoice
    worker: WorkerSpec
    rendezvous: Rendezvous
    workers: _containers.RepeatedCompositeFieldContainer[WorkerStatus]
    worker_generation: int
    def __init__(self, id: _Optional[str] = ..., tenant: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[AllocationState, str]] = ..., whole: _Optional[_Union[WholeGpus, _Mapping]] = ..., fraction: _Optional[_Union[FractionalGpu, _Mapping]] = ..., mig: _Optional[_Union[MigSlice, _Mapping]] = ..., gpu_models: _Optional[_Iterable[str]] = ..., priority_class: _Optional[str] = ..., workload_class: _Optional[_Union[WorkloadClass, str]] = ..., model: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., bindings: _Optional[_Iterable[_Union[GpuBinding, _Mapping]]] = ..., pending_reasons: _Optional[_Iterable[_Union[PendingReason, _Mapping]]] = ..., unschedulable: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events: _Optional[_Iterable[_Union[AllocationEvent, _Mapping]]] = ..., message: _Optional[str] = ..., on_failure: _Optional[_Union[FailurePolicy, str]] = ..., checkpoint_uri: _Optional[str] = ..., last_checkpoint_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., resume_from: _Optional[str] = ..., preemption_deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., preempted_for: _Optional[str] = ..., preemption_count: _Optional[int] = ..., layout: _Optional[_Union[ParallelLayout, _Mapping]] = ..., model_spec: _Optional[_Union[ModelSpec, _Mapping]] = ..., layout_choice: _Optional[_Union[LayoutChoice, _Mapping]] = ..., worker: _Optional[_Union[WorkerSpec, _Mapping]] = ..., rendezvous: _Optional[_Union[Rendezvous, _Mapping]] = ..., workers: _Optional[_Iterable[_Union[WorkerStatus, _Mapping]]] = ..., worker_generation: _Optional[int] = ...) -> None: ...

class MigInstance(_message.Message):
    __slots__ = ("profile", "start", "size", "allocation_id")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    profile: str
    start: int
    size: int
    allocation_id: str
    def __init__(self, profile: _Optional[str] = ..., start: _Optional[int] = ..., size: _Optional[int] = ..., allocation_id: _Optional[str] = ...) -> None: ...

class Gpu(_message.Message):
    __slots__ = ("uuid", "node", "index", "model", "memory_mib", "mig_enabled", "health", "health_reasons", "used_milli", "used_memory_mib", "free_milli", "free_memory_mib", "mig_instances", "mig_slot_map", "nvlink_peers", "pci_bus_id", "allocation_count")
    UUID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MIG_ENABLED_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASONS_FIELD_NUMBER: _ClassVar[int]
    USED_MILLI_FIELD_NUMBER: _ClassVar[int]
    USED_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    FREE_MILLI_FIELD_NUMBER: _ClassVar[int]
    FREE_MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MIG_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MIG_SLOT_MAP_FIELD_NUMBER: _ClassVar[int]
    NVLINK_PEERS_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    node: str
    index: int
    model: str
    memory_mib: int
    mig_enabled: bool
    health: GpuHealth
    health_reasons: _containers.RepeatedScalarFieldContainer[str]
    used_milli: int
    used_memory_mib: int
    free_milli: int
    free_memory_mib: int
    mig_instances: _containers.RepeatedCompositeFieldContainer[MigInstance]
    mig_slot_map: str
    nvlink_peers: _containers.RepeatedScalarFieldContainer[int]
    pci_bus_id: str
    allocation_count: int
    def __init__(self, uuid: _Optional[str] = ..., node: _Optional[str] = ..., index: _Optional[int] = ..., model: _Optional[str] = ..., memory_mib: _Optional[int] = ..., mig_enabled: _Optional[bool] = ..., health: _Optional[_Union[GpuHealth, str]] = ..., health_reasons: _Optional[_Iterable[str]] = ..., used_milli: _Optional[int] = ..., used_memory_mib: _Optional[int] = ..., free_milli: _Optional[int] = ..., free_memory_mib: _Optional[int] = ..., mig_instances: _Optional[_Iterable[_Union[MigInstance, _Mapping]]] = ..., mig_slot_map: _Optional[str] = ..., nvlink_peers: _Optional[_Iterable[int]] = ..., pci_bus_id: _Optional[str] = ..., allocation_count: _Optional[int] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("name", "hostname", "state", "labels", "last_heartbeat_at", "registered_at", "gpu_count", "free_gpus", "gpu_models", "allocation_count", "gpus")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_AT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    GPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    FREE_GPUS_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    hostname: str
    state: NodeState
    labels: _containers.ScalarMap[str, str]
    last_heartbeat_at: _timestamp_pb2.Timestamp
    registered_at: _timestamp_pb2.Timestamp
    gpu_count: int
    free_gpus: int
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    allocation_count: int
    gpus: _containers.RepeatedCompositeFieldContainer[Gpu]
    def __init__(self, name: _Optional[str] = ..., hostname: _Optional[str] = ..., state: _Optional[_Union[NodeState, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., last_heartbeat_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., gpu_count: _Optional[int] = ..., free_gpus: _Optional[int] = ..., gpu_models: _Optional[_Iterable[str]] = ..., allocation_count: _Optional[int] = ..., gpus: _Optional[_Iterable[_Union[Gpu, _Mapping]]] = ...) -> None: ...

class GpuSpec(_message.Message):
    __slots__ = ("uuid", "index", "model", "memory_mib", "mig_enabled", "nvlink_peers", "pci_bus_id")
    UUID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MIG_ENABLED_FIELD_NUMBER: _ClassVar[int]
    NVLINK_PEERS_FIELD_NUMBER: _ClassVar[int]
    PCI_BUS_ID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    index: int
    model: str
    memory_mib: int
    mig_enabled: bool
    nvlink_peers: _containers.RepeatedScalarFieldContainer[int]
    pci_bus_id: str
    def __init__(self, uuid: _Optional[str] = ..., index: _Optional[int] = ..., model: _Optional[str] = ..., memory_mib: _Optional[int] = ..., mig_enabled: _Optional[bool] = ..., nvlink_peers: _Optional[_Iterable[int]] = ..., pci_bus_id: _Optional[str] = ...) -> None: ...

class MigProfile(_message.Message):
    __slots__ = ("name", "compute_slices", "memory_slices", "memory_mib", "max_count", "valid_starts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SLICES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_SLICES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MAX_COUNT_FIELD_NUMBER: _ClassVar[int]
    VALID_STARTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    compute_slices: int
    memory_slices: int
    memory_mib: int
    max_count: int
    valid_starts: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., compute_slices: _Optional[int] = ..., memory_slices: _Optional[int] = ..., memory_mib: _Optional[int] = ..., max_count: _Optional[int] = ..., valid_starts: _Optional[_Iterable[int]] = ...) -> None: ...

class GpuModel(_message.Message):
    __slots__ = ("name", "generation", "memory_mib", "memory_bandwidth_gbps", "bf16_tflops", "nvlink_gbps", "throughput_weight", "mig_capable", "mig_profiles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    MEMORY_MIB_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BANDWIDTH_GBPS_FIELD_NUMBER: _ClassVar[int]
    BF16_TFLOPS_FIELD_NUMBER: _ClassVar[int]
    NVLINK_GBPS_FIELD_NUMBER: _ClassVar[int]
    THROUGHPUT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIG_CAPABLE_FIELD_NUMBER: _ClassVar[int]
    MIG_PROFILES_FIELD_NUMBER: _ClassVar[int]
    name: str
    generation: str
    memory_mib: int
    memory_bandwidth_gbps: int
    bf16_tflops: int
    nvlink_gbps: int
    throughput_weight: float
    mig_capable: bool
    mig_profiles: _containers.RepeatedCompositeFieldContainer[MigProfile]
    def __init__(self, name: _Optional[str] = ..., generation: _Optional[str] = ..., memory_mib: _Optional[int] = ..., memory_bandwidth_gbps: _Optional[int] = ..., bf16_tflops: _Optional[int] = ..., nvlink_gbps: _Optional[int] = ..., throughput_weight: _Optional[float] = ..., mig_capable: _Optional[bool] = ..., mig_profiles: _Optional[_Iterable[_Union[MigProfile, _Mapping]]] = ...) -> None: ...
