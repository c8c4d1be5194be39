"""Where the gateway learns replicas: a ReplicaSource, and the pools it feeds.

A source yields `ReplicaUpdate`s — first every current replica, then a
`Synced` marker, then changes — exactly what `Deployments.WatchReplicas`
streams (scheduler/gateway/watch.py adapts it). Tests feed an
`InProcessReplicaSource` directly. `Pools` keeps one Router per deployment
and applies the updates; nothing is read from PostgreSQL per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from scheduler.domain.catalogue import resolve_model_name
from scheduler.domain.errors import GpupoolError, InvalidArgument
from scheduler.domain.llm_catalogue import DTYPE_BYTES
from scheduler.routing.policies import DEFAULT_POLICY, PolicyConfig
from scheduler.routing.router import Router, check_policy, speed_of
from scheduler.routing.view import EngineMetrics, ReplicaSpeed
from scheduler.serving.performance import DEFAULT_BLOCK_TOKENS, engine_performance

# A replica whose model is not in the LLM catalogue is weighed by its GPU's
# relative throughput (A100-80GB = 1.0) around these figures.
_UNKNOWN_PREFILL_TOKENS_PER_S = 10_000.0
_UNKNOWN_DECODE_S_PER_TOKEN = 1 / 5_000.0
_UNKNOWN_KV_TOKENS = 200_000


@dataclass(frozen=True)
class ReplicaUpdate:
    """One replica as the scheduler last described it."""

    id: str
    deployment: str
    tenant: str
    state: str  # starting | ready | standby | draining | stopped
    endpoint: str = ""
    model: str = ""
    variant: str = ""
    gpu_model: str = ""
    gpu_count: int = 1
    metrics: EngineMetrics | None = None
    # The deployment's routing policy (its spec); "": the gateway's default for it.
    routing: str = ""


@dataclass(frozen=True)
class Synced:
    """The initial snapshot is complete: replicas not in it are gone."""


@dataclass(frozen=True)
class Resync:
    """The stream (re)starts: a fresh snapshot follows."""


SourceEvent = ReplicaUpdate | Synced | Resync


class ReplicaSource(Protocol):
    def events(self) -> AsyncIterator[SourceEvent]: ...


class InProcessReplicaSource:
    """A source fed by the caller (tests, `gpupool gateway --replica`)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[SourceEvent] = asyncio.Queue()

    def put(self, event: SourceEvent) -> None:
        self._queue.put_nowait(event)

    async def events(self) -> AsyncIterator[SourceEvent]:
        while True:
            yield await self._queue.get()


def replica_speed(update: ReplicaUpdate) -> ReplicaSpeed:
    """The performance model's speed for this replica's GPU, model and variant."""
    dtype = update.variant if update.variant in DTYPE_BYTES else None
    try:
        perf = engine_performance(
            update.gpu_model, update.model, dtype=dtype, gpu_count=max(1, update.gpu_count)
        )
        if perf.fits:
            return speed_of(perf)
    except GpupoolError:
        pass
    gpu = resolve_model_name(update.gpu_model)
    weight = (gpu.throughput_weight if gpu else 1.0) * max(1, update.gpu_count)
    return ReplicaSpeed(
        prefill_tokens_per_s=_UNKNOWN_PREFILL_TOKENS_PER_S * weight,
        decode_s_per_token=_UNKNOWN_DECODE_S_PER_TOKEN / weight,
        kv_capacity_tokens=_UNKNOWN_KV_TOKENS,
    )


@dataclass
class Pool:
    """One deployment's replicas behind its router."""

    deployment: str
    tenant: str
    router: Router
    models: set[str] = field(default_factory=set)
    endpoints: dict[str, str] = field(default_factory=dict)
    served_model: dict[str, str] = field(default_factory=dict)


class Pools:
    """Deployments by name, each with a Router; fed by a ReplicaSource."""

    def __init__(
        self,
        policies: Mapping[str, str] | None = None,
        default_policy: str = DEFAULT_POLICY,
        config: PolicyConfig | None = None,
        session_ttl_s: float = 600.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._clock = clock
        self._policies = dict(policies or {})
        self._default_policy = default_policy
        self._config = config
        self._session_ttl_s = session_ttl_s
        # (tenant, deployment name) -> pool: names are unique per tenant only.
        self.pools: dict[tuple[str, str], Pool] = {}
        self._where: dict[str, tuple[str, str]] = {}  # replica id -> pool key
        self._snapshot: set[str] | None = None
        # Set once the first snapshot is complete (read from the loop and from threads).
        self.synced = threading.Event()

    def apply(self, event: SourceEvent) -> None:
        if isinstance(event, Resync):
            self._snapshot = set()
            return
        if isinstance(event, Synced):
            if self._snapshot is not None:
                for gone in set(self._where) - self._snapshot:
                    self._remove(gone)
            self._snapshot = None
            self.synced.set()
            return
        if self._snapshot is not None:
            self._snapshot.add(event.id)
        self._upsert(event)

    def _upsert(self, update: ReplicaUpdate) -> None:
        key = (update.tenant, update.deployment)
        previous = self._where.get(update.id)
        if previous is not None and previous != key:
            self._remove(update.id)
        if update.state == "stopped":
            self._remove(update.id)
            return
        # The deployment's own policy; else the gateway's flags (per deployment, default).
        policy = update.routing or self._policies.get(update.deployment, self._default_policy)
        pool = self.pools.get(key)
        if pool is None:
            router = Router(
                policy,
                config=self._config,
                block_tokens=DEFAULT_BLOCK_TOKENS,
                session_ttl_s=self._session_ttl_s,
                clock=self._clock,
            )
            pool = Pool(update.deployment, update.tenant, router)
            self.pools[key] = pool
        elif pool.router.policy != policy:
            pool.router.policy = check_policy(policy)
        pool.router.upsert_replica(
            update.id,
            state=update.state,
            speed=replica_speed(update),
            endpoint=update.endpoint,
            gpu_model=update.gpu_model,
            variant=update.variant,
        )
        if update.metrics is not None:
            pool.router.set_metrics(update.id, update.metrics)
        pool.endpoints[update.id] = update.endpoint
        pool.served_model[update.id] = update.model or update.deployment
        if update.model:
            pool.models.add(update.model)
        self._where[update.id] = key

    def _remove(self, replica_id: str) -> None:
        key = self._where.pop(replica_id, None)
        pool = self.pools.get(key) if key is not None else None
        if pool is None:
            return
        pool.router.remove_replica(replica_id)
        pool.endpoints.pop(replica_id, None)
        pool.served_model.pop(replica_id, None)

    def find(self, model: str, tenant: str | None) -> Pool | None:
        """The deployment `model` names (else the one deployment serving a model of
        that name) among those `tenant` may use; tenant None: every tenant's (admins),
        where `TENANT/NAME` picks one tenant's."""
        if tenant is None and "/" in model:
            tenant, model = model.split("/", 1)
        if tenant is not None:
            # A deployment's name is unique per tenant: one lookup on the request path.
            pool = self.pools.get((tenant, model))
            if pool is not None:
                return pool
        mine = self.visible(tenant)
        named = [p for p in mine if p.deployment == model]
        if len(named) == 1:
            return named[0]
        serving = [p for p in mine if model in p.models]
        return serving[0] if len(serving) == 1 else None

    def visible(self, tenant: str | None) -> list[Pool]:
        return sorted(
            (p for p in self.pools.values() if tenant is None or p.tenant == tenant),
            key=lambda p: (p.tenant, p.deployment),
        )


class StaticReplicaSource:
    """A fixed replica list (`gpupool gateway --replicas FILE`): for a data plane
    without a scheduler, and for benchmarks."""

    def __init__(self, replicas: list[ReplicaUpdate]) -> None:
        self._replicas = replicas

    async def events(self) -> AsyncIterator[SourceEvent]:
        yield Resync()
        for replica in self._replicas:
            yield replica
        yield Synced()
        await asyncio.Event().wait()  # nothing ever changes


def read_replicas_file(data: object) -> list[ReplicaUpdate]:
    """`{replicas: [{id, deployment, tenant, endpoint, model, gpu_model, …}]}` (YAML/JSON)."""
    if not isinstance(data, dict) or not isinstance(data.get("replicas"), list):
        raise InvalidArgument("replicas file: expected a mapping with a `replicas` list")
    updates = []
    allowed = {f for f in ReplicaUpdate.__dataclass_fields__ if f != "metrics"}
    for i, item in enumerate(data["replicas"]):
        if not isinstance(item, dict) or not {"id", "deployment", "tenant", "endpoint"} <= set(
            item
        ):
            raise InvalidArgument(
                f"replicas file: replica {i} needs id, deployment, tenant and endpoint"
            )
        unknown = set(item) - allowed
        if unknown:
            raise InvalidArgument(
                f"replicas file: replica {i}: unknown {', '.join(sorted(unknown))}"
            )
        values = {k: str(v) if k != "gpu_count" else int(v) for k, v in item.items()}
        values.setdefault("state", "ready")
        if values.get("routing"):
            try:
                check_policy(str(values["routing"]))
            except InvalidArgument as exc:
                raise InvalidArgument(f"replicas file: replica {i}: {exc.message}") from None
        updates.append(ReplicaUpdate(**values))  # type: ignore[arg-type]
    return updates
