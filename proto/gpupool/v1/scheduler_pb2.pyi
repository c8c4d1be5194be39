from gpupool.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_CANCELLED: _ClassVar[ErrorCode]
    ERROR_CODE_UNKNOWN: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_ALREADY_EXISTS: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]
    ERROR_CODE_RESOURCE_EXHAUSTED: _ClassVar[ErrorCode]
    ERROR_CODE_FAILED_PRECONDITION: _ClassVar[ErrorCode]
    ERROR_CODE_ABORTED: _ClassVar[ErrorCode]
    ERROR_CODE_OUT_OF_RANGE: _ClassVar[ErrorCode]
    ERROR_CODE_UNIMPLEMENTED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_DATA_LOSS: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_CANCELLED: ErrorCode
ERROR_CODE_UNKNOWN: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_ALREADY_EXISTS: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_RESOURCE_EXHAUSTED: ErrorCode
ERROR_CODE_FAILED_PRECONDITION: ErrorCode
ERROR_CODE_ABORTED: ErrorCode
ERROR_CODE_OUT_OF_RANGE: ErrorCode
ERROR_CODE_UNIMPLEMENTED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_DATA_LOSS: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode

class AckPreemptionRequest(_message.Message):
    __slots__ = ("allocation_id", "checkpoint_uri")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    checkpoint_uri: str
    def __init__(self, allocation_id: _Optional[str] = ..., checkpoint_uri: _Optional[str] = ...) -> None: ...

class AckPreemptionResponse(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ...) -> None: ...

class ReportCheckpointRequest(_message.Message):
    __slots__ = ("allocation_id", "checkpoint_uri")
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_URI_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    checkpoint_uri: str
    def __init__(self, allocation_id: _Optional[str] = ..., checkpoint_uri: _Optional[str] = ...) -> None: ...

class ReportCheckpointResponse(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ...) -> None: ...

class AllocateRequest(_message.Message):
    __slots__ = ("tenant", "request_id", "whole", "fraction", "mig", "gpu_models", "priority_class", "workload_class", "model", "labels", "no_wait", "on_failure", "layout", "model_spec", "worker")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TENANT_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    MIG_FIELD_NUMBER: _ClassVar[int]
    GPU_MODELS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_CLASS_FIELD_NUMBER: _ClassVar[int]
    WORKLOAD_CLASS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    ON_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_SPEC_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    request_id: str
    whole: _types_pb2.WholeGpus
    fraction: _types_pb2.FractionalGpu
    mig: _types_pb2.MigSlice
    gpu_models: _containers.RepeatedScalarFieldContainer[str]
    priority_class: str
    workload_class: _types_pb2.WorkloadClass
    model: str
    labels: _containers.ScalarMap[str, str]
    no_wait: bool
    on_failure: _types_pb2.FailurePolicy
    layout: _types_pb2.ParallelLayout
    model_spec: _types_pb2.ModelSpec
    worker: _types_pb2.WorkerSpec
    def __init__(self, tenant: _Optional[str] = ..., request_id: _Optional[str] = ..., whole: _Optional[_Union[_types_pb2.WholeGpus, _Mapping]] = ..., fraction: _Optional[_Union[_types_pb2.FractionalGpu, _Mapping]] = ..., mig: _Optional[_Union[_types_pb2.MigSlice, _Mapping]] = ..., gpu_models: _Optional[_Iterable[str]] = ..., priority_class: _Optional[str] = ..., workload_class: _Optional[_Union[_types_pb2.WorkloadClass, str]] = ..., model: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., no_wait: _Optional[bool] = ..., on_failure: _Optional[_Union[_types_pb2.FailurePolicy, str]] = ..., layout: _Optional[_Union[_types_pb2.ParallelLayout, _Mapping]] = ..., model_spec: _Optional[_Union[_types_pb2.ModelSpec, _Mapping]] = ..., worker: _Optional[_Union[_types_pb2.WorkerSpec, _Mapping]] = ...) -> None: ...

class AllocateResponse(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("allocation_id",)
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    def __init__(self, allocation_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ...) -> None: ...

class AllocateManyRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[AllocateRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[AllocateRequest, _Mapping]]] = ...) -> None: ...

class AllocateManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AllocateResult]
    def __init__(self, results: _Optional[_Iterable[_Union[AllocateResult, _Mapping]]] = ...) -> None: ...

class AllocateResult(_message.Message):
    __slots__ = ("allocation", "error")
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    error: ItemError
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ReleaseManyRequest(_message.Message):
    __slots__ = ("allocation_ids",)
    ALLOCATION_IDS_FIELD_NUMBER: _ClassVar[int]
    allocation_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, allocation_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseManyResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReleaseResult]
    def __init__(self, results: _Optional[_Iterable[_Union[ReleaseResult, _Mapping]]] = ...) -> None: ...

class ReleaseResult(_message.Message):
    __slots__ = ("allocation", "error")
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    error: ItemError
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ...) -> None: ...

class GetAllocationRequest(_message.Message):
    __slots__ = ("allocation_id",)
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    def __init__(self, allocation_id: _Optional[str] = ...) -> None: ...

class GetAllocationResponse(_message.Message):
    __slots__ = ("allocation",)
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ...) -> None: ...

class ListAllocationsRequest(_message.Message):
    __slots__ = ("tenant", "state", "node", "page_size", "page_token", "request_id")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    state: _types_pb2.AllocationState
    node: str
    page_size: int
    page_token: str
    request_id: str
    def __init__(self, tenant: _Optional[str] = ..., state: _Optional[_Union[_types_pb2.AllocationState, str]] = ..., node: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListAllocationsResponse(_message.Message):
    __slots__ = ("allocations", "next_page_token")
    ALLOCATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    allocations: _containers.RepeatedCompositeFieldContainer[_types_pb2.Allocation]
    next_page_token: str
    def __init__(self, allocations: _Optional[_Iterable[_Union[_types_pb2.Allocation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchAllocationRequest(_message.Message):
    __slots__ = ("allocation_id",)
    ALLOCATION_ID_FIELD_NUMBER: _ClassVar[int]
    allocation_id: str
    def __init__(self, allocation_id: _Optional[str] = ...) -> None: ...

class WatchAllocationResponse(_message.Message):
    __slots__ = ("allocation", "event")
    ALLOCATION_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    allocation: _types_pb2.Allocation
    event: _types_pb2.AllocationEvent
    def __init__(self, allocation: _Optional[_Union[_types_pb2.Allocation, _Mapping]] = ..., event: _Optional[_Union[_types_pb2.AllocationEvent, _Mapping]] = ...) -> None: ...
