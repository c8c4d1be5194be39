import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetCostRequest(_message.Message):
    __slots__ = ("tenant", "deployment", "since", "until")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    deployment: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CostLine(_message.Message):
    __slots__ = ("tenant", "deployment", "gpu_model", "spot", "gpu_hours", "cost", "price_per_hour")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    SPOT_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PRICE_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    deployment: str
    gpu_model: str
    spot: bool
    gpu_hours: float
    cost: float
    price_per_hour: float
    def __init__(self, tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., gpu_model: _Optional[str] = ..., spot: _Optional[bool] = ..., gpu_hours: _Optional[float] = ..., cost: _Optional[float] = ..., price_per_hour: _Optional[float] = ...) -> None: ...

class TenantCost(_message.Message):
    __slots__ = ("tenant", "gpu_hours", "cost")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    gpu_hours: float
    cost: float
    def __init__(self, tenant: _Optional[str] = ..., gpu_hours: _Optional[float] = ..., cost: _Optional[float] = ...) -> None: ...

class DeploymentCost(_message.Message):
    __slots__ = ("tenant", "deployment", "gpu_hours", "cost", "prompt_tokens", "generation_tokens", "lifetime_cost", "has_tokens", "cost_per_million_tokens", "cost_per_million_generated_tokens")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_COST_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_PER_MILLION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_PER_MILLION_GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    deployment: str
    gpu_hours: float
    cost: float
    prompt_tokens: int
    generation_tokens: int
    lifetime_cost: float
    has_tokens: bool
    cost_per_million_tokens: float
    cost_per_million_generated_tokens: float
    def __init__(self, tenant: _Optional[str] = ..., deployment: _Optional[str] = ..., gpu_hours: _Optional[float] = ..., cost: _Optional[float] = ..., prompt_tokens: _Optional[int] = ..., generation_tokens: _Optional[int] = ..., lifetime_cost: _Optional[float] = ..., has_tokens: _Optional[bool] = ..., cost_per_million_tokens: _Optional[float] = ..., cost_per_million_generated_tokens: _Optional[float] = ...) -> None: ...

class GetCostResponse(_message.Message):
    __slots__ = ("currency", "since", "until", "lines", "tenants", "deployments", "gpu_hours", "cost")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    TENANTS_FIELD_NUMBER: _ClassVar[int]
    DEPLOYMENTS_FIELD_NUMBER: _ClassVar[int]
    GPU_HOURS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    currency: str
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    lines: _containers.RepeatedCompositeFieldContainer[CostLine]
    tenants: _containers.RepeatedCompositeFieldContainer[TenantCost]
    deployments: _containers.RepeatedCompositeFieldContainer[DeploymentCost]
    gpu_hours: float
    cost: float
    def __init__(self, currency: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lines: _Optional[_Iterable[_Union[CostLine, _Mapping]]] = ..., tenants: _Optional[_Iterable[_Union[TenantCost, _Mapping]]] = ..., deployments: _Optional[_Iterable[_Union[DeploymentCost, _Mapping]]] = ..., gpu_hours: _Optional[float] = ..., cost: _Optional[float] = ...) -> None: ...

class GetPricesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GpuPrice(_message.Message):
    __slots__ = ("gpu_model", "on_demand_per_hour", "spot_per_hour")
    GPU_MODEL_FIELD_NUMBER: _ClassVar[int]
    ON_DEMAND_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    SPOT_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    gpu_model: str
    on_demand_per_hour: float
    spot_per_hour: float
    def __init__(self, gpu_model: _Optional[str] = ..., on_demand_per_hour: _Optional[float] = ..., spot_per_hour: _Optional[float] = ...) -> None: ...

class GetPricesResponse(_message.Message):
    __slots__ = ("currency", "prices")
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    PRICES_FIELD_NUMBER: _ClassVar[int]
    currency: str
    prices: _containers.RepeatedCompositeFieldContainer[GpuPrice]
    def __init__(self, currency: _Optional[str] = ..., prices: _Optional[_Iterable[_Union[GpuPrice, _Mapping]]] = ...) -> None: ...
