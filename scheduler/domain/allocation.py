"""An allocation request as the domain sees it, and its validation.

Validation here is about the request alone (ranges, names, sizes no GPU in
the catalogue could hold). Whether the current fleet could hold it is the
placement engine's question ("unschedulable").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from scheduler.domain.auto_layout import QUANTIZED_DTYPES, ModelRequest, resolve_model
from scheduler.domain.catalogue import CATALOGUE, mig_profile_names
from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.domain.layout import MAX_WORLD_SIZE, ParallelLayout
from scheduler.domain.llm_catalogue import canonical_model_name
from scheduler.domain.priorities import DEFAULT_PRIORITY_CLASS, PRIORITY_CLASSES
from scheduler.domain.requests import (
    Demand,
    FractionDemand,
    MigDemand,
    PlacementRequest,
    WholeDemand,
)

MAX_NAME_LENGTH = 128
MAX_MODEL_NAME_LENGTH = 256
MAX_LABELS = 32
MAX_LABEL_LENGTH = 256
# An NVLink domain holds at most 72 GPUs (GB200 NVL72); no node is larger.
MAX_GPUS_PER_REQUEST = 72
WORKLOAD_CLASSES = (
    "unspecified",
    "latency-critical",
    "throughput",
    "batch",
    "long-context",
    "small-model",
)


@dataclass(frozen=True)
class WorkerRequest:
    """Which worker template to launch per rank, with its arguments and extra env."""

    template: str
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"template": self.template, "args": dict(self.args), "env": dict(self.env)}


@dataclass(frozen=True)
class AllocationSpec:
    tenant: str
    request_id: str
    demand: Demand
    gpu_models: tuple[str, ...] = ()
    priority_class: str = DEFAULT_PRIORITY_CLASS
    workload_class: str = "unspecified"
    model: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    no_wait: bool = False
    on_failure: str = "requeue"  # or "fail": what a GPU/node failure or drain does
    layout: ParallelLayout | None = None  # whole GPUs only; demand.count is its world size
    # The model to serve; without resources the scheduler derives them from it.
    model_spec: ModelRequest | None = None
    # What automatic layout chose ({gpu_model, tp, weights_mib, kv_cache_mib, explanation}).
    layout_choice: dict[str, object] | None = None
    # Soft spread over failure domains (PlacementRequest.spread_away); not part
    # of the body: a preference of the moment, not of the request.
    spread_away: tuple[frozenset[str], ...] = ()

    @property
    def needs_auto_layout(self) -> bool:
        """A model spec and no resources: whole.count 0 stands for "derive it"."""
        return (
            self.model_spec is not None
            and self.layout is None
            and isinstance(self.demand, WholeDemand)
            and self.demand.count == 0
        )

    @property
    def quantized(self) -> bool:
        if self.model_spec is None:
            return False
        return resolve_model(self.model_spec).dtype in QUANTIZED_DTYPES

    worker: WorkerRequest | None = None

    @property
    def priority(self) -> int:
        return PRIORITY_CLASSES[self.priority_class].value

    @property
    def kind(self) -> str:
        if isinstance(self.demand, WholeDemand):
            return "whole"
        if isinstance(self.demand, FractionDemand):
            return "fraction"
        return "mig"

    def placement_request(self) -> PlacementRequest:
        return PlacementRequest(
            demand=self.demand,
            gpu_models=frozenset(self.gpu_models),
            workload_class=self.workload_class,
            priority=self.priority,
            layout=self.layout,
            quantized=self.quantized,
            model=canonical_model_name(self.model) if self.model else "",
            spread_away=self.spread_away,
        )

    def body_hash(self) -> str:
        """Digest of everything but the idempotency key and no_wait: a retry
        must carry the same body to get the first answer back."""
        body: dict[str, Any] = {
            "demand": [type(self.demand).__name__, *vars(self.demand).values()],
            "gpu_models": sorted(self.gpu_models),
            "priority_class": self.priority_class,
            "workload_class": self.workload_class,
            "model": self.model,
            "labels": sorted(self.labels.items()),
            "on_failure": self.on_failure,
        }
        if self.layout is not None:  # absent before layouts existed: old digests still match
            body["layout"] = self.layout.as_dict()
        if self.model_spec is not None:
            body["model_spec"] = self.model_spec.as_dict()
        if self.worker is not None:  # absent otherwise: older rows keep their digest
            body["worker"] = self.worker.as_json()
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _check_name(what: str, value: str, limit: int, required: bool = True) -> None:
    if required and not value:
        raise InvalidArgument(f"{what} is required")
    if len(value) > limit:
        raise InvalidArgument(f"{what} is {len(value)} characters long; the limit is {limit}")


def validate_spec(spec: AllocationSpec) -> None:
    """Raise InvalidArgument with a message a person can act on."""
    _check_name("tenant", spec.tenant, MAX_NAME_LENGTH)
    _check_name("request_id", spec.request_id, MAX_NAME_LENGTH)
    _check_name("model", spec.model, MAX_MODEL_NAME_LENGTH, required=False)
    if spec.priority_class not in PRIORITY_CLASSES:
        known = ", ".join(PRIORITY_CLASSES)
        raise InvalidArgument(
            f"unknown priority class {quoted(spec.priority_class)} (known: {known})"
        )
    if spec.workload_class not in WORKLOAD_CLASSES:
        raise InvalidArgument(f"unknown workload class {quoted(spec.workload_class)}")
    _validate_labels(spec.labels)
    for name in spec.gpu_models:
        if name not in CATALOGUE:
            known = ", ".join(CATALOGUE)
            raise InvalidArgument(
                f"unknown GPU model {quoted(name)} in gpu_models (known: {known})"
            )
    if spec.model_spec is not None:
        resolve_model(spec.model_spec)  # InvalidArgument for an unknown model or dtype
    if spec.needs_auto_layout:
        return  # resources come from the model spec once the fleet is known
    if spec.layout is not None:
        _validate_layout(spec.layout, spec.demand)
    else:
        _validate_demand(spec.demand, spec.gpu_models)


def _validate_layout(layout: ParallelLayout, demand: Demand) -> None:
    if not isinstance(demand, WholeDemand):
        raise InvalidArgument(
            "a parallel layout needs whole GPUs (one per rank), not a fraction or MIG slice"
        )
    layout.validate()
    if demand.count != layout.world_size:
        raise InvalidArgument(
            f"whole.count {demand.count} differs from the layout's world size "
            f"tp×cp×pp×replicas = {layout.world_size}; leave whole.count unset or make them equal"
        )
    if layout.world_size > MAX_WORLD_SIZE:
        raise InvalidArgument(f"layout world size {layout.world_size} exceeds {MAX_WORLD_SIZE}")


def _validate_labels(labels: dict[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"{len(labels)} labels given; the limit is {MAX_LABELS}")
    for key, value in labels.items():
        _check_name("label key", key, MAX_LABEL_LENGTH)
        _check_name(f"label {quoted(key)}", value, MAX_LABEL_LENGTH, required=False)


def _validate_demand(demand: Demand, gpu_models: tuple[str, ...]) -> None:
    models = [CATALOGUE[m] for m in gpu_models] or list(CATALOGUE.values())
    if isinstance(demand, WholeDemand):
        if not 1 <= demand.count <= MAX_GPUS_PER_REQUEST:
            raise InvalidArgument(
                f"whole.count must be between 1 and {MAX_GPUS_PER_REQUEST}, got {demand.count}"
            )
    elif isinstance(demand, FractionDemand):
        if not 1 <= demand.milli <= 1000:
            raise InvalidArgument(
                f"fraction.milli_gpu must be between 1 and 1000 (1000 = one whole GPU), "
                f"got {demand.milli}"
            )
        if demand.memory_mib < 1:
            raise InvalidArgument("fraction.memory_mib must be at least 1 MiB")
        largest = max(models, key=lambda m: m.memory_mib)
        if demand.memory_mib > largest.memory_mib:
            raise InvalidArgument(
                f"fraction.memory_mib {demand.memory_mib} is larger than any allowed GPU "
                f"(largest: {largest.name} with {largest.memory_mib} MiB)"
            )
    elif isinstance(demand, MigDemand):
        _validate_mig_profile(demand.profile, gpu_models)


def _validate_mig_profile(profile: str, gpu_models: tuple[str, ...]) -> None:
    if not profile:
        raise InvalidArgument("mig.profile is required, e.g. '3g.40gb'")
    if profile not in mig_profile_names():
        raise InvalidArgument(
            f"unknown MIG profile {quoted(profile)}; profiles are named per GPU model, "
            "e.g. 3g.40gb on A100-80GB/H100-80GB, 3g.20gb on A100-40GB, 3g.71gb on H200"
        )
    for name in gpu_models:
        model = CATALOGUE[name]
        if model.mig_profile(profile) is None:
            offered = ", ".join(p.name for p in model.mig_profiles) or "none: no MIG support"
            raise InvalidArgument(
                f"MIG profile {quoted(profile)} does not exist on {name} (it offers: {offered})"
            )
