"""Rebuild an AllocationSpec from its stored row (for the pending queue)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.requests import Demand, FractionDemand, MigDemand, WholeDemand


def demand_from_row(row: Mapping[str, Any]) -> Demand:
    if row["kind"] == "whole":
        return WholeDemand(count=row["gpu_count"])
    if row["kind"] == "fraction":
        return FractionDemand(milli=row["milli"], memory_mib=row["memory_mib"])
    return MigDemand(profile=row["mig_profile"])


def spec_from_row(row: Mapping[str, Any]) -> AllocationSpec:
    return AllocationSpec(
        tenant=row["tenant"],
        request_id=row["request_id"],
        demand=demand_from_row(row),
        gpu_models=tuple(row["gpu_models"]),
        priority_class=row["priority_class"],
        workload_class=row["workload_class"],
        model=row["model"],
        labels=dict(row["labels"]),
        on_failure=row["on_failure"],
        layout=ParallelLayout(**row["layout"]) if row.get("layout") else None,
    )
