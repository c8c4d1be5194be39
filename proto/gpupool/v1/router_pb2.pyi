from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RouteRequest(_message.Message):
    __slots__ = ("deployment", "tenant", "prompt_tokens", "prompt_blocks", "block_tokens", "max_tokens", "session", "policy")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    BLOCK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SESSION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    tenant: str
    prompt_tokens: int
    prompt_blocks: _containers.RepeatedScalarFieldContainer[int]
    block_tokens: int
    max_tokens: int
    session: str
    policy: str
    def __init__(self, deployment: _Optional[str] = ..., tenant: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., prompt_blocks: _Optional[_Iterable[int]] = ..., block_tokens: _Optional[int] = ..., max_tokens: _Optional[int] = ..., session: _Optional[str] = ..., policy: _Optional[str] = ...) -> None: ...

class ReplicaScores(_message.Message):
    __slots__ = ("replica", "scores")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    replica: str
    scores: _containers.ScalarMap[str, float]
    def __init__(self, replica: _Optional[str] = ..., scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("replica", "endpoint", "policy", "reason", "candidates", "ticket", "expected_cached_tokens", "header")
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    HEADER_FIELD_NUMBER: _ClassVar[int]
    replica: str
    endpoint: str
    policy: str
    reason: str
    candidates: _containers.RepeatedCompositeFieldContainer[ReplicaScores]
    ticket: str
    expected_cached_tokens: int
    header: str
    def __init__(self, replica: _Optional[str] = ..., endpoint: _Optional[str] = ..., policy: _Optional[str] = ..., reason: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[ReplicaScores, _Mapping]]] = ..., ticket: _Optional[str] = ..., expected_cached_tokens: _Optional[int] = ..., header: _Optional[str] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("deployment", "tenant", "ticket", "output_tokens", "replica_failed")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FAILED_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    tenant: str
    ticket: str
    output_tokens: int
    replica_failed: bool
    def __init__(self, deployment: _Optional[str] = ..., tenant: _Optional[str] = ..., ticket: _Optional[str] = ..., output_tokens: _Optional[int] = ..., replica_failed: _Optional[bool] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
