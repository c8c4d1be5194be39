from gpupool.v1 import types_pb2 as _types_pb2
from gpupool.v1 import scheduler_pb2 as _scheduler_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ModelPlacement(_message.Message):
    __slots__ = ("node", "gpu_uuid", "tier", "standby")
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_UUID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    STANDBY_FIELD_NUMBER: _ClassVar[int]
    node: str
    gpu_uuid: str
    tier: _types_pb2.ResidencyTier
    standby: bool
    def __init__(self, node: _Optional[str] = ..., gpu_uuid: _Optional[str] = ..., tier: _Optional[_Union[_types_pb2.ResidencyTier, str]] = ..., standby: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("model", "size_bytes", "placements", "cold_start_seconds")
    class ColdStartSecondsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    PLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    COLD_START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    model: str
    size_bytes: int
    placements: _containers.RepeatedCompositeFieldContainer[ModelPlacement]
    cold_start_seconds: _containers.ScalarMap[str, float]
    def __init__(self, model: _Optional[str] = ..., size_bytes: _Optional[int] = ..., placements: _Optional[_Iterable[_Union[ModelPlacement, _Mapping]]] = ..., cold_start_seconds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class WorkerLogsRequest(_message.Message):
    __slots__ = ("allocation_id", "rank", "tail_bytes", "follow")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    TAIL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    rank: int
    tail_bytes: int
    follow: bool
    def __init__(self, allocation_id: _Optional[str] = ..., rank: _Optional[int] = ..., tail_bytes: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class WorkerLogsChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class InterruptNodeRequest(_message.Message):
    __slots__ = ("name", "in_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    in_seconds: int
    def __init__(self, name: _Optional[str] = ..., in_seconds: _Optional[int] = ...) -> None: ...

class InterruptNodeResponse(_message.Message):
    __slots__ = ("node", "preempted")
    NODE_FIELD_NUMBER: _ClassVar[int]
    PREEMPTED_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    preempted: int
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ..., preempted: _Optional[int] = ...) -> None: ...

class Tenant(_message.Message):
    __slots__ = ("name", "quota_units", "weight", "used_units", "borrowed_units", "pending")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTA_UNITS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    USED_UNITS_FIELD_NUMBER: _ClassVar[int]
    BORROWED_UNITS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    name: str
    quota_units: float
    weight: float
    used_units: float
    borrowed_units: float
    pending: int
    def __init__(self, name: _Optional[str] = ..., quota_units: _Optional[float] = ..., weight: _Optional[float] = ..., used_units: _Optional[float] = ..., borrowed_units: _Optional[float] = ..., pending: _Optional[int] = ...) -> None: ...

class SetTenantQuotaRequest(_message.Message):
    __slots__ = ("name", "quota_units", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    QUOTA_UNITS_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    quota_units: float
    weight: float
    def __init__(self, name: _Optional[str] = ..., quota_units: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class SetTenantQuotaResponse(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: Tenant
    def __init__(self, tenant: _Optional[_Union[Tenant, _Mapping]] = ...) -> None: ...

class ListTenantsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTenantsResponse(_message.Message):
    __slots__ = ("tenants",)
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    tenants: _containers.RepeatedCompositeFieldContainer[Tenant]
    def __init__(self, tenants: _Optional[_Iterable[_Union[Tenant, _Mapping]]] = ...) -> None: ...

class ListQueueRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListQueueResponse(_message.Message):
    __slots__ = ("allocations",)
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[_types_pb2.Allocation]
    def __init__(self, allocations: _Optional[_Iterable[_Union[_types_pb2.Allocation, _Mapping]]] = ...) -> None: ...

class PreemptRequest(_message.Message):
    __slots__ = ("allocation_id", "grace_seconds")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    grace_seconds: int
    def __init__(self, allocation_id: _Optional[str] = ..., grace_seconds: _Optional[int] = ...) -> None: ...

class PreemptResponse(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ...) -> None: ...

class InjectFaultRequest(_message.Message):
    __slots__ = ("node", "gpu_index", "fault", "clear")
    NODE_FIELD_NUMBER: _ClassVar[int]
    GPU_INDEX_FIELD_NUMBER: _ClassVar[int]
    FAULT_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    node: str
    gpu_index: int
    fault: str
    clear: bool
    def __init__(self, node: _Optional[str] = ..., gpu_index: _Optional[int] = ..., fault: _Optional[str] = ..., clear: _Optional[bool] = ...) -> None: ...

class InjectFaultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[_types_pb2.Node, _Mapping]]] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ...) -> None: ...

class ListGpusRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class ListGpusResponse(_message.Message):
    __slots__ = ("gpus",)
    GPUS_FIELD_NUMBER: _ClassVar[int]
    gpus: _containers.RepeatedCompositeFieldContainer[_types_pb2.Gpu]
    def __init__(self, gpus: _Optional[_Iterable[_Union[_types_pb2.Gpu, _Mapping]]] = ...) -> None: ...

class NodeActionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class NodeActionResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: _types_pb2.Node
    def __init__(self, node: _Optional[_Union[_types_pb2.Node, _Mapping]] = ...) -> None: ...

class GetCatalogueRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetCatalogueResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[_types_pb2.GpuModel]
    def __init__(self, models: _Optional[_Iterable[_Union[_types_pb2.GpuModel, _Mapping]]] = ...) -> None: ...
