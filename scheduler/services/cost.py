"""Use case of `gpupool cost`: GPU-hours, money and cost per token for a caller."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from scheduler.domain.callers import Caller, require_tenant, tenant_scope
from scheduler.domain.clock import Clock
from scheduler.domain.errors import FailedPrecondition, InvalidArgument, NotFound, quoted
from scheduler.serving.cost import (
    CostLine,
    HeldInterval,
    cost_lines,
    money_per_million_tokens,
    totals_by,
)
from scheduler.serving.prices import PriceTable
from scheduler.store import cost as store


@dataclass(frozen=True)
class DeploymentCost:
    tenant: str
    deployment: str
    gpu_hours: float
    cost: float
    prompt_tokens: int = 0
    generation_tokens: int = 0
    lifetime_cost: float = 0.0
    cost_per_million_tokens: float | None = None
    cost_per_million_generated_tokens: float | None = None


@dataclass(frozen=True)
class CostReport:
    currency: str
    since: datetime | None
    until: datetime
    lines: tuple[CostLine, ...]
    tenants: tuple[tuple[str, float, float], ...]  # (tenant, GPU-hours, money)
    deployments: tuple[DeploymentCost, ...]

    @property
    def gpu_hours(self) -> float:
        return sum(line.gpu_hours for line in self.lines)

    @property
    def cost(self) -> float:
        return sum(line.money for line in self.lines)


class CostService:
    def __init__(self, engine: Engine, clock: Clock, prices: PriceTable) -> None:
        self._engine = engine
        self._clock = clock
        self._prices = prices

    @property
    def prices(self) -> PriceTable:
        return self._prices

    def report(
        self,
        caller: Caller,
        *,
        tenant: str = "",
        deployment: str = "",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> CostReport:
        now = self._clock.now()
        end = min(until, now) if until is not None else now
        if since is not None and since >= end:
            raise InvalidArgument(
                f"since ({since.isoformat()}) must be before until ({end.isoformat()})"
            )
        scope = tenant_scope(caller)
        wanted = tenant or scope or ""
        if wanted:
            require_tenant(caller, wanted, f"cost of tenant {wanted!r}")
        deployment_id: str | None = None
        with self._engine.connect() as conn:
            if deployment:
                if not wanted:
                    raise InvalidArgument(
                        f"tenant is needed with deployment {quoted(deployment)} "
                        "(deployment names are per tenant)"
                    )
                ref = store.find_deployment(conn, wanted, deployment)
                if ref is None:
                    raise NotFound(f"tenant {wanted!r} has no deployment {quoted(deployment)}")
                deployment_id = ref.id
            intervals = store.held_intervals(
                conn, tenant=wanted or None, deployment_id=deployment_id, since=since, until=end
            )
            tokens = store.replica_tokens(
                conn, tenant=wanted or None, deployment_id=deployment_id, since=since, until=end
            )
            lifetimes = store.lifetime_intervals(
                conn, sorted({t.allocation_id for t in tokens}), end
            )
        lines = self._priced(intervals, since, end)
        per_deployment = {(t, d): (h, m) for t, d, h, m in totals_by(lines, deployment=True) if d}
        by_allocation: dict[str, float] = defaultdict(float)
        for interval in lifetimes:
            price = self._price(interval.gpu_model, interval.spot)
            by_allocation[interval.allocation_id] += (
                interval.hours_within(None, end) * interval.gpus * price
            )
        deployments = []
        grouped: dict[tuple[str, str], list[store.ReplicaTokens]] = defaultdict(list)
        for replica in tokens:
            grouped[replica.tenant, replica.deployment].append(replica)
        for key in sorted(set(grouped) | set(per_deployment)):
            replicas = grouped.get(key, [])
            hours, money = per_deployment.get(key, (0.0, 0.0))
            prompt = sum(r.prompt_tokens for r in replicas)
            generated = sum(r.generation_tokens for r in replicas)
            life = sum(by_allocation.get(r.allocation_id, 0.0) for r in replicas)
            deployments.append(
                DeploymentCost(
                    key[0],
                    key[1],
                    hours,
                    money,
                    prompt,
                    generated,
                    life,
                    money_per_million_tokens(life, prompt + generated),
                    money_per_million_tokens(life, generated),
                )
            )
        tenants = tuple((t, h, m) for t, _, h, m in totals_by(lines, deployment=False))
        return CostReport(
            self._prices.currency, since, end, tuple(lines), tenants, tuple(deployments)
        )

    def _priced(
        self, intervals: list[HeldInterval], since: datetime | None, end: datetime
    ) -> list[CostLine]:
        try:
            return cost_lines(intervals, self._prices, since, end)
        except NotFound as exc:
            raise FailedPrecondition(
                f"{exc.message}: add it to the scheduler's price table (deploy/prices.yaml)"
            ) from exc

    def _price(self, gpu_model: str, spot: bool) -> float:
        try:
            return self._prices.per_hour(gpu_model, spot)
        except NotFound as exc:
            raise FailedPrecondition(
                f"{exc.message}: add it to the scheduler's price table (deploy/prices.yaml)"
            ) from exc
