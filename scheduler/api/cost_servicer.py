"""gpupool.v1.Cost: a thin layer over CostService."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from gpupool.v1 import cost_pb2 as pb
from gpupool.v1 import cost_pb2_grpc
from scheduler.api.converters import timestamp
from scheduler.api.interceptor import current_caller
from scheduler.services.cost import CostReport, CostService


def _when(request: pb.GetCostRequest, name: str) -> datetime | None:
    if not request.HasField(name):  # type: ignore[arg-type]
        return None
    value: datetime = getattr(request, name).ToDatetime(tzinfo=UTC)
    return value


def report_message(report: CostReport) -> pb.GetCostResponse:
    return pb.GetCostResponse(
        currency=report.currency,
        since=timestamp(report.since),
        until=timestamp(report.until),
        lines=[
            pb.CostLine(
                tenant=x.tenant,
                deployment=x.deployment,
                gpu_model=x.gpu_model,
                spot=x.spot,
                gpu_hours=x.gpu_hours,
                cost=x.money,
                price_per_hour=x.price_per_hour,
            )
            for x in report.lines
        ],
        tenants=[pb.TenantCost(tenant=t, gpu_hours=h, cost=m) for t, h, m in report.tenants],
        deployments=[
            pb.DeploymentCost(
                tenant=d.tenant,
                deployment=d.deployment,
                gpu_hours=d.gpu_hours,
                cost=d.cost,
                prompt_tokens=d.prompt_tokens,
                generation_tokens=d.generation_tokens,
                lifetime_cost=d.lifetime_cost,
                has_tokens=d.cost_per_million_tokens is not None,
                cost_per_million_tokens=d.cost_per_million_tokens or 0.0,
                cost_per_million_generated_tokens=d.cost_per_million_generated_tokens or 0.0,
            )
            for d in report.deployments
        ],
        gpu_hours=report.gpu_hours,
        cost=report.cost,
    )


class CostServicer(cost_pb2_grpc.CostServicer):
    def __init__(self, cost: CostService) -> None:
        self._cost = cost

    def GetCost(
        self, request: pb.GetCostRequest, context: grpc.ServicerContext
    ) -> pb.GetCostResponse:
        report = self._cost.report(
            current_caller(),
            tenant=request.tenant,
            deployment=request.deployment,
            since=_when(request, "since"),
            until=_when(request, "until"),
        )
        return report_message(report)

    def GetPrices(
        self, request: pb.GetPricesRequest, context: grpc.ServicerContext
    ) -> pb.GetPricesResponse:
        table = self._cost.prices
        return pb.GetPricesResponse(
            currency=table.currency,
            prices=[
                pb.GpuPrice(
                    gpu_model=model,
                    on_demand_per_hour=price.on_demand_per_hour,
                    spot_per_hour=price.spot_per_hour,
                )
                for model, price in sorted(table.gpus.items())
            ],
        )
