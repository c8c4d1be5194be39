"""Rebuild an AllocationSpec from its stored row (for the pending queue)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from scheduler.domain.allocation import AllocationSpec
from scheduler.domain.auto_layout import ModelRequest, choose_layout
from scheduler.domain.fleet import FleetSnapshot
from scheduler.domain.generations import GenerationPolicy
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.llm_catalogue import canonical_model_name
from scheduler.domain.requests import Demand, FractionDemand, MigDemand, WholeDemand
from scheduler.placement.gang import model_capacity


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
        model_spec=ModelRequest(**row["model_spec"]) if row.get("model_spec") else None,
        layout_choice=row.get("layout_choice"),
    )


def with_auto_layout(
    spec: AllocationSpec, snapshot: FleetSnapshot, policy: GenerationPolicy | None
) -> AllocationSpec:
    """The spec with resources derived from its model spec on this fleet;
    FailedPrecondition when no GPU model of the fleet can hold the model."""
    assert spec.model_spec is not None
    llm = (
        canonical_model_name(spec.model or spec.model_spec.name)
        if spec.model or spec.model_spec.name
        else ""
    )
    capacity = model_capacity(snapshot, llm)
    decision = choose_layout(spec.model_spec, spec.workload_class, capacity, policy)
    return replace(
        spec,
        demand=WholeDemand(count=decision.layout.world_size),
        layout=decision.layout,
        gpu_models=(decision.gpu_model,),
        workload_class=decision.workload_class,
        model=spec.model or spec.model_spec.name,
        layout_choice={
            "gpu_model": decision.gpu_model,
            "tp": decision.layout.tp,
            "weights_mib": decision.weights_mib,
            "kv_cache_mib": decision.kv_cache_mib,
            "explanation": list(decision.explanation),
        },
    )
