from gpupool.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterNodeRequest(_message.Message):
    __slots__ = ("name", "hostname", "labels", "gpus")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    name: str
    hostname: str
    labels: _containers.ScalarMap[str, str]
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.GpuSpec]
    def __init__(self, name: _Optional[str] = ..., hostname: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., gpus: _Optional[_Iterable[_Union[_types_pb2.GpuSpec, _Mapping]]] = ...) -> None: ...

class RegisterNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node", "health", "residency", "residency_reported", "seq")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_REPORTED_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    node: str
    health: _containers.RepeatedCompositeFieldContainer[GpuHealthReport]
    residency: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelResidency]
    residency_reported: bool
    seq: int
    def __init__(self, node: _Optional[str] = ..., health: _Optional[_Iterable[_Union[GpuHealthReport, _Mapping]]] = ..., residency: _Optional[_Iterable[_Union[_types_pb2.ModelResidency, _Mapping]]] = ..., residency_reported: _Optional[bool] = ..., seq: _Optional[int] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _types_pb2.NodeState
    def __init__(self, state: _Optional[_Union[_types_pb2.NodeState, str]] = ...) -> None: ...

class GpuHealthReport(_message.Message):
    __slots__ = ("uuid", "health", "reasons", "temperature_c", "power_mw", "utilization_pct", "memory_used_mib", "recent_xids")
    UUID_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_C_FIELD_NUMBER: _ClassVar[int]
    POWER_MW_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PCT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_MIB_FIELD_NUMBER: _ClassVar[int]
    RECENT_XIDS_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    health: _types_pb2.GpuHealth
    reasons: _containers.RepeatedScalarFieldContainer[str]
    temperature_c: float
    power_mw: int
    utilization_pct: int
    memory_used_mib: int
    recent_xids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, uuid: _Optional[str] = ..., health: _Optional[_Union[_types_pb2.GpuHealth, str]] = ..., reasons: _Optional[_Iterable[str]] = ..., temperature_c: _Optional[float] = ..., power_mw: _Optional[int] = ..., utilization_pct: _Optional[int] = ..., memory_used_mib: _Optional[int] = ..., recent_xids: _Optional[_Iterable[int]] = ...) -> None: ...

class AgentHello(_message.Message):
    __slots__ = ("node", "health", "running_allocation_ids", "agent_version", "simulated", "residency", "workers")
    NODE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    RUNNING_ALLOCATION_IDS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIMULATED_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    node: RegisterNodeRequest
    health: _containers.RepeatedCompositeFieldContainer[GpuHealthReport]
    running_allocation_ids: _containers.RepeatedScalarFieldContainer[str]
    agent_version: str
    simulated: bool
    residency: _containers.RepeatedCompositeFieldContainer[_types_pb2.ModelResidency]
    workers: _containers.RepeatedCompositeFieldContainer[_types_pb2.WorkerStatus]
    def __init__(self, node: _Optional[_Union[RegisterNodeRequest, _Mapping]] = ..., health: _Optional[_Iterable[_Union[GpuHealthReport, _Mapping]]] = ..., running_allocation_ids: _Optional[_Iterable[str]] = ..., agent_version: _Optional[str] = ..., simulated: _Optional[bool] = ..., residency: _Optional[_Iterable[_Union[_types_pb2.ModelResidency, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[_types_pb2.WorkerStatus, _Mapping]]] = ...) -> None: ...

class WorkerReport(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_types_pb2.WorkerStatus]
    def __init__(self, workers: _Optional[_Iterable[_Union[_types_pb2.WorkerStatus, _Mapping]]] = ...) -> None: ...

class MigDeviceReport(_message.Message):
    __slots__ = ("allocation_id", "gpu_uuid", "mig_start", "mig_device_uuid")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    MIG_START_FIELD_NUMBER: _ClassVar[int]
    MIG_DEVICE_UUID_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    gpu_uuid: str
    mig_start: int
    mig_device_uuid: str
    def __init__(self, allocation_id: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., mig_start: _Optional[int] = ..., mig_device_uuid: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("request_id", "data", "eof", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    data: bytes
    eof: bool
    error: str
    def __init__(self, request_id: _Optional[str] = ..., data: _Optional[bytes] = ..., eof: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class EngineMetricsReport(_message.Message):
    __slots__ = ("engines",)
    ENGINES_FIELD_NUMBER: _ClassVar[int]
    engines: _containers.RepeatedCompositeFieldContainer[EngineMetrics]
    def __init__(self, engines: _Optional[_Iterable[_Union[EngineMetrics, _Mapping]]] = ...) -> None: ...

class EngineMetrics(_message.Message):
    __slots__ = ("allocation_id", "ok", "error", "kv_cache_usage", "num_requests_running", "num_requests_waiting", "prompt_tokens_total", "generation_tokens_total")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    KV_CACHE_USAGE_FIELD_NUMBER: _ClassVar[int]
    NUM_REQUESTS_RUNNING_FIELD_NUMBER: _ClassVar[int]
    NUM_REQUESTS_WAITING_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TOKENS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    ok: bool
    error: str
    kv_cache_usage: float
    num_requests_running: int
    num_requests_waiting: int
    prompt_tokens_total: int
    generation_tokens_total: int
    def __init__(self, allocation_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., kv_cache_usage: _Optional[float] = ..., num_requests_running: _Optional[int] = ..., num_requests_waiting: _Optional[int] = ..., prompt_tokens_total: _Optional[int] = ..., generation_tokens_total: _Optional[int] = ...) -> None: ...

class ObservedAllocations(_message.Message):
    __slots__ = ("running_allocation_ids",)
    RUNNING_ALLOCATION_IDS_FIELD_NUMBER: _ClassVar[int]
    running_allocation_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, running_allocation_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class InterruptionNotice(_message.Message):
    __slots__ = ("in_seconds",)
    IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    in_seconds: int
    def __init__(self, in_seconds: _Optional[int] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("hello", "heartbeat", "observed", "interruption", "workers", "mig_device", "log_chunk", "engine_metrics")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    MIG_DEVICE_FIELD_NUMBER: _ClassVar[int]
    LOG_CHUNK_FIELD_NUMBER: _ClassVar[int]
    ENGINE_METRICS_FIELD_NUMBER: _ClassVar[int]
    hello: AgentHello
    heartbeat: HeartbeatRequest
    observed: ObservedAllocations
    interruption: InterruptionNotice
    workers: WorkerReport
    mig_device: MigDeviceReport
    log_chunk: LogChunk
    engine_metrics: EngineMetricsReport
    def __init__(self, hello: _Optional[_Union[AgentHello, _Mapping]] = ..., heartbeat: _Optional[_Union[HeartbeatRequest, _Mapping]] = ..., observed: _Optional[_Union[ObservedAllocations, _Mapping]] = ..., interruption: _Optional[_Union[InterruptionNotice, _Mapping]] = ..., workers: _Optional[_Union[WorkerReport, _Mapping]] = ..., mig_device: _Optional[_Union[MigDeviceReport, _Mapping]] = ..., log_chunk: _Optional[_Union[LogChunk, _Mapping]] = ..., engine_metrics: _Optional[_Union[EngineMetricsReport, _Mapping]] = ...) -> None: ...

class DesiredState(_message.Message):
    __slots__ = ("node", "node_state", "allocations", "heartbeat_interval_ms", "self_fence_after_ms", "self_fence_kill_after_ms")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NODE_STATE_FIELD_NUMBER: _ClassVar[int]
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SELF_FENCE_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    SELF_FENCE_KILL_AFTER_MS_FIELD_NUMBER: _ClassVar[int]
    node: str
    node_state: _types_pb2.NodeState
    allocations: _containers.RepeatedCompositeFieldContainer[_types_pb2.Allocation]
    heartbeat_interval_ms: int
    self_fence_after_ms: int
    self_fence_kill_after_ms: int
    def __init__(self, node: _Optional[str] = ..., node_state: _Optional[_Union[_types_pb2.NodeState, str]] = ..., allocations: _Optional[_Iterable[_Union[_types_pb2.Allocation, _Mapping]]] = ..., heartbeat_interval_ms: _Optional[int] = ..., self_fence_after_ms: _Optional[int] = ..., self_fence_kill_after_ms: _Optional[int] = ...) -> None: ...

class HeartbeatAck(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...

class LogRequest(_message.Message):
    __slots__ = ("request_id", "allocation_id", "rank", "tail_bytes", "follow", "cancel")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    allocation_id: str
    rank: int
    tail_bytes: int
    follow: bool
    cancel: bool
    def __init__(self, request_id: _Optional[str] = ..., allocation_id: _Optional[str] = ..., rank: _Optional[int] = ..., tail_bytes: _Optional[int] = ..., follow: _Optional[bool] = ..., cancel: _Optional[bool] = ...) -> None: ...

class FaultCommand(_message.Message):
    __slots__ = ("gpu_index", "fault", "clear")
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    gpu_index: int
    fault: str
    clear: bool
    def __init__(self, gpu_index: _Optional[int] = ..., fault: _Optional[str] = ..., clear: _Optional[bool] = ...) -> None: ...

class SchedulerMessage(_message.Message):
    __slots__ = ("desired", "fault", "log_request", "heartbeat_ack")
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    LOG_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACK_FIELD_NUMBER: _ClassVar[int]
    desired: DesiredState
    fault: FaultCommand
    log_request: LogRequest
    heartbeat_ack: HeartbeatAck
    def __init__(self, desired: _Optional[_Union[DesiredState, _Mapping]] = ..., fault: _Optional[_Union[FaultCommand, _Mapping]] = ..., log_request: _Optional[_Union[LogRequest, _Mapping]] = ..., heartbeat_ack: _Optional[_Union[HeartbeatAck, _Mapping]] = ...) -> None: ...
