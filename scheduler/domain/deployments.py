"""A deployment as the domain sees it: its spec, the checks on it, and the
allocation each of its replicas asks for. Pure (no I/O, no clock).

A deployment serves one logical model; its variants are the same model on
different GPU generations (FP16 on H100/H200, INT4 on A100-40GB). A replica
is one allocation of one (variant, GPU model) candidate running the
deployment's engine template, with `model`, `port` (and, for the simulated
engine, `gpu_model`, `dtype`, `served_model_name`) filled per replica.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from croniter import croniter

from scheduler.autoscaling import (
    AutoscalingSpec,
    RatePolicy,
    ScalingBehavior,
    ScheduledMinimum,
)
from scheduler.autoscaling import validate as validate_autoscaling
from scheduler.domain.allocation import WORKLOAD_CLASSES, AllocationSpec, WorkerRequest
from scheduler.domain.auto_layout import ModelCapacity, ModelRequest, choose_layout, resolve_model
from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import FailedPrecondition, GpupoolError, InvalidArgument, quoted
from scheduler.domain.generations import GenerationPolicy
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.llm_catalogue import normalise_dtype
from scheduler.domain.model_loading import DEFAULT_BANDWIDTHS, GPU, HOST_RAM, LOCAL_DISK, REMOTE
from scheduler.domain.priorities import DEFAULT_PRIORITY_CLASS, PRIORITY_CLASSES
from scheduler.domain.requests import WholeDemand
from scheduler.domain.worker_templates import WorkerTemplate, check_args
from scheduler.routing.policies import POLICIES

DEFAULT_TARGET_KV = 0.70
MAX_REPLICAS = 1000
MAX_VARIANTS = 16
MAX_CRON_ENTRIES = 32
NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Template arguments the reconcile loop fills per replica: a request never sets them.
REPLICA_ARGS = ("model", "port", "gpu_model", "dtype", "served_model_name")
# Labels on a replica's allocation, so `gpupool allocation list` shows whose it is.
DEPLOYMENT_LABEL = "gpupool.io/deployment"
REPLICA_LABEL = "gpupool.io/replica"


@dataclass(frozen=True)
class Behavior:
    """HPA v2 `behavior` of one direction: the stabilisation window and a rate policy."""

    stabilization_s: int
    max_step: int
    period_s: int


DEFAULT_SCALE_UP = Behavior(stabilization_s=60, max_step=2, period_s=120)
DEFAULT_SCALE_DOWN = Behavior(stabilization_s=300, max_step=1, period_s=300)


@dataclass(frozen=True)
class Variant:
    name: str
    dtype: str
    gpu_models: tuple[str, ...] = ()
    tp: int = 0  # 0: automatic layout
    engine_model: str = ""


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    tenant: str
    model: str
    engine: str
    params_billion: float = 0.0
    variants: tuple[Variant, ...] = ()
    engine_args: Mapping[str, str] = field(default_factory=dict)
    workload_class: str = "unspecified"
    priority_class: str = DEFAULT_PRIORITY_CLASS
    min_replicas: int = 1
    max_replicas: int = 1
    target_kv: float = 0.0  # 0: DEFAULT_TARGET_KV
    scale_up: Behavior = DEFAULT_SCALE_UP
    scale_down: Behavior = DEFAULT_SCALE_DOWN
    standby_replicas: int = 0
    cron_minimums: Mapping[str, int] = field(default_factory=dict)
    advisory: bool = False
    scale_to_zero: bool = False
    context_tokens: int = 0
    concurrent_sequences: int = 0
    metrics_window_s: int = 0  # 0: the autoscaler's default
    routing: str = ""  # the gateway's routing policy; "": the gateway's default

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["engine_args"] = dict(self.engine_args)
        body["cron_minimums"] = dict(self.cron_minimums)
        return body

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DeploymentSpec:
        values = dict(body)
        values["variants"] = tuple(
            Variant(**{**v, "gpu_models": tuple(v.get("gpu_models", ()))})
            for v in values.get("variants", ())
        )
        values["scale_up"] = Behavior(**values["scale_up"])
        values["scale_down"] = Behavior(**values["scale_down"])
        return cls(**values)

    def model_request(self, variant: Variant) -> ModelRequest:
        return ModelRequest(
            name=self.model if not self.params_billion else "",
            params_billion=self.params_billion,
            dtype=variant.dtype,
            context_tokens=self.context_tokens,
            concurrent_sequences=self.concurrent_sequences,
        )


@dataclass(frozen=True)
class Candidate:
    """One way to place a replica: a variant on one GPU model with its TP degree."""

    variant: Variant
    gpu_model: str
    tp: int


def _behavior(what: str, given: Behavior, default: Behavior) -> Behavior:
    filled = Behavior(
        given.stabilization_s or default.stabilization_s,
        given.max_step or default.max_step,
        given.period_s or default.period_s,
    )
    for name, value in asdict(filled).items():
        if not 0 < value <= 86_400:
            raise InvalidArgument(f"{what}.{name} must be 1..86400, got {value}")
    return filled


def _variant(index: int, variant: Variant, spec: DeploymentSpec) -> Variant:
    where = f"variants[{index}]"
    try:
        dtype = normalise_dtype(variant.dtype or "bf16")
    except ValueError as exc:
        raise InvalidArgument(f"{where}.dtype: {exc}") from None
    for name in variant.gpu_models:
        if name not in CATALOGUE:
            known = ", ".join(CATALOGUE)
            raise InvalidArgument(
                f"{where}.gpu_models: unknown GPU model {quoted(name)} (known: {known})"
            )
    if variant.tp < 0 or variant.tp > 72 or (variant.tp & (variant.tp - 1)):
        raise InvalidArgument(f"{where}.tp must be 0 (automatic) or a power of two ≤ 64")
    name = variant.name or dtype
    if not NAME_PATTERN.match(name):
        raise InvalidArgument(f"{where}.name {quoted(name)}: lowercase letters, digits and -")
    try:
        resolve_model(replace(spec.model_request(variant), dtype=dtype))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from None
    return replace(variant, name=name, dtype=dtype, gpu_models=tuple(variant.gpu_models))


def validate_deployment(
    spec: DeploymentSpec, templates: Mapping[str, WorkerTemplate]
) -> DeploymentSpec:
    """The spec with defaults filled in, or InvalidArgument naming the field."""
    if not spec.name:
        raise InvalidArgument("name is required")
    if not NAME_PATTERN.match(spec.name):
        raise InvalidArgument(
            f"name {quoted(spec.name)}: 1-63 lowercase letters, digits and -, "
            "starting and ending with a letter or digit"
        )
    if not spec.tenant or len(spec.tenant) > 128:
        raise InvalidArgument("tenant is required (at most 128 characters)")
    if not spec.model:
        raise InvalidArgument("model is required (an LLM catalogue name, or params_billion)")
    if not (math.isfinite(spec.params_billion) and spec.params_billion >= 0):
        raise InvalidArgument("params_billion must be a finite number ≥ 0")
    if not spec.params_billion:
        try:
            resolve_model(ModelRequest(name=spec.model))
        except InvalidArgument:
            raise InvalidArgument(
                f"model {quoted(spec.model)} is not in the LLM catalogue; "
                "give params_billion for another model"
            ) from None
    template = templates.get(spec.engine)
    if template is None:
        known = ", ".join(sorted(templates)) or "none configured"
        raise InvalidArgument(f"engine: unknown worker template {quoted(spec.engine)} ({known})")
    if "port" not in template.args or "model" not in template.args:
        raise InvalidArgument(
            f"engine: template {quoted(spec.engine)} serves no HTTP port (it takes no "
            "`model` and `port` arguments)"
        )
    given = sorted(set(spec.engine_args) & set(REPLICA_ARGS))
    if given:
        raise InvalidArgument(f"engine_args: {', '.join(given)} are set per replica")
    try:
        check_args(
            template, {**_replica_args(template, "x", 1, "H100-80GB", "bf16"), **spec.engine_args}
        )
    except InvalidArgument as exc:
        raise InvalidArgument(f"engine_args: {exc}") from None
    if spec.workload_class not in WORKLOAD_CLASSES:
        raise InvalidArgument(f"workload_class: unknown {quoted(spec.workload_class)}")
    if spec.priority_class not in PRIORITY_CLASSES:
        known = ", ".join(PRIORITY_CLASSES)
        raise InvalidArgument(f"priority_class: unknown {quoted(spec.priority_class)} ({known})")
    if spec.routing and spec.routing not in POLICIES:
        known = ", ".join(POLICIES)
        raise InvalidArgument(f"routing: unknown policy {quoted(spec.routing)} ({known})")
    lowest = 0 if spec.scale_to_zero else 1
    if not lowest <= spec.min_replicas <= MAX_REPLICAS:
        raise InvalidArgument(
            f"min_replicas must be {lowest}..{MAX_REPLICAS}, got {spec.min_replicas}"
            + ("" if spec.scale_to_zero else " (0 needs scale_to_zero)")
        )
    if spec.min_replicas > spec.max_replicas:
        raise InvalidArgument(
            f"min_replicas {spec.min_replicas} is greater than max_replicas {spec.max_replicas}"
        )
    if spec.max_replicas > MAX_REPLICAS:
        raise InvalidArgument(f"max_replicas may be at most {MAX_REPLICAS}")
    target = spec.target_kv or DEFAULT_TARGET_KV
    if not (math.isfinite(target) and 0 < target <= 1):
        raise InvalidArgument(f"target_kv_cache_usage must be in (0, 1], got {spec.target_kv}")
    if not 0 <= spec.standby_replicas <= MAX_REPLICAS:
        raise InvalidArgument(f"standby_replicas must be 0..{MAX_REPLICAS}")
    if len(spec.cron_minimums) > MAX_CRON_ENTRIES:
        raise InvalidArgument(f"cron_minimums has more than {MAX_CRON_ENTRIES} entries")
    for expression, minimum in spec.cron_minimums.items():
        if not croniter.is_valid(expression):
            raise InvalidArgument(f"cron_minimums: {quoted(expression)} is not a cron expression")
        if not 0 <= minimum <= spec.max_replicas:
            raise InvalidArgument(
                f"cron_minimums[{quoted(expression)}] = {minimum} is above max_replicas "
                f"{spec.max_replicas}"
            )
    if len(spec.variants) > MAX_VARIANTS:
        raise InvalidArgument(f"variants: at most {MAX_VARIANTS}")
    variants = spec.variants or (Variant(name="", dtype="bf16"),)
    checked = tuple(_variant(i, v, spec) for i, v in enumerate(variants))
    if len({v.name for v in checked}) != len(checked):
        raise InvalidArgument("variants: names must differ")
    checked_spec = replace(
        spec,
        variants=checked,
        target_kv=target,
        scale_up=_behavior("scale_up", spec.scale_up, DEFAULT_SCALE_UP),
        scale_down=_behavior("scale_down", spec.scale_down, DEFAULT_SCALE_DOWN),
        engine_args=dict(spec.engine_args),
        cron_minimums=dict(spec.cron_minimums),
    )
    validate_autoscaling(autoscaling_spec(checked_spec))
    return checked_spec


def candidates(
    spec: DeploymentSpec,
    capacity: Mapping[str, ModelCapacity],
    policy: GenerationPolicy | None,
) -> tuple[list[Candidate], list[str]]:
    """Every (variant, GPU model, TP) this fleet could hold one replica of, in
    the order to try them (variants in their order, then their GPU models'),
    and the reasons of those it cannot."""
    found: list[Candidate] = []
    reasons: list[str] = []
    for variant in spec.variants:
        models = list(variant.gpu_models) or sorted(capacity)
        for gpu_model in models:
            where = f"variant {variant.name} on {gpu_model}"
            cap = capacity.get(gpu_model)
            if cap is None or cap.total == 0:
                reasons.append(f"{where}: the fleet has no {gpu_model}")
                continue
            if variant.tp:
                if cap.domain < variant.tp:
                    reasons.append(
                        f"{where}: tp={variant.tp} needs {variant.tp} GPUs in one NVLink "
                        f"domain; the largest has {cap.domain}"
                    )
                    continue
                found.append(Candidate(variant, gpu_model, variant.tp))
                continue
            try:
                decision = choose_layout(
                    spec.model_request(variant), spec.workload_class, {gpu_model: cap}, policy
                )
            except GpupoolError as exc:
                reasons.append(f"{where}: {exc}")
                continue
            found.append(Candidate(variant, decision.gpu_model, decision.layout.tp))
    return found, reasons


def require_placeable(
    spec: DeploymentSpec, capacity: Mapping[str, ModelCapacity], policy: GenerationPolicy | None
) -> list[Candidate]:
    found, reasons = candidates(spec, capacity, policy)
    if not found:
        raise FailedPrecondition(
            f"no GPU of this fleet can hold a replica of {spec.model}: " + "; ".join(reasons)
        )
    return found


def _replica_args(
    template: WorkerTemplate, model: str, port: int, gpu_model: str, dtype: str, served: str = ""
) -> dict[str, str]:
    values = {
        "model": model,
        "port": str(port),
        "gpu_model": gpu_model,
        "dtype": dtype,
        "served_model_name": served or model,
    }
    return {k: v for k, v in values.items() if k in template.args}


def replica_allocation(
    spec: DeploymentSpec,
    template: WorkerTemplate,
    candidate: Candidate,
    replica_id: str,
    port: int,
    no_wait: bool,
    spread_away: tuple[frozenset[str], ...] = (),
) -> AllocationSpec:
    """The allocation one replica asks for: whole GPUs of the candidate's model
    in a TP layout, the deployment's classes, its model (warm placement
    scores it), and the engine template with this replica's arguments."""
    variant = candidate.variant
    engine_model = variant.engine_model or spec.model
    args = {
        **spec.engine_args,
        **_replica_args(
            template, engine_model, port, candidate.gpu_model, variant.dtype, spec.model
        ),
    }
    return AllocationSpec(
        tenant=spec.tenant,
        request_id=f"replica-{replica_id}",
        demand=WholeDemand(count=candidate.tp),
        gpu_models=(candidate.gpu_model,),
        priority_class=spec.priority_class,
        workload_class=spec.workload_class,
        model=spec.model,
        labels={DEPLOYMENT_LABEL: spec.name, REPLICA_LABEL: replica_id},
        no_wait=no_wait,
        layout=ParallelLayout(tp=candidate.tp),
        model_spec=spec.model_request(variant),
        worker=WorkerRequest(template=template.name, args=args),
        spread_away=spread_away,
    )


def cold_start_s(spec: DeploymentSpec, candidate: Candidate, tier: str = HOST_RAM) -> float:
    """Expected load time of one replica: its weights over the bandwidth of the
    tier they come from (0 when already on the GPU; host RAM over PCIe, local
    disk, remote storage)."""
    resolved = resolve_model(spec.model_request(candidate.variant))
    size = resolved.weights_mib * 1024 * 1024
    return DEFAULT_BANDWIDTHS.seconds(size, tier, candidate.gpu_model)


def load_tier(
    resident: Collection[tuple[str, str, str]], node: str, gpu_uuids: Collection[str]
) -> str:
    """Where a replica's weights load from: (node, tier, GPU uuid) rows of the
    model's residency; the warmest tier on its node, else remote storage."""
    here = [(tier, uuid) for n, tier, uuid in resident if n == node]
    if any(tier == GPU and uuid in gpu_uuids for tier, uuid in here):
        return GPU
    for tier in (HOST_RAM, LOCAL_DISK):
        if any(t == tier for t, _ in here):
            return tier
    return REMOTE


def autoscaling_spec(spec: DeploymentSpec, manual_replicas: int | None = None) -> AutoscalingSpec:
    """What decide() takes; a manual count pins min and max to it."""
    low, high = spec.min_replicas, spec.max_replicas
    if manual_replicas is not None:
        low = high = manual_replicas
    scaling = AutoscalingSpec(
        min_replicas=low,
        max_replicas=max(high, 1),
        target_kv_utilisation=spec.target_kv or DEFAULT_TARGET_KV,
        scale_up=_scaling(spec.scale_up),
        scale_down=_scaling(spec.scale_down),
        standby=spec.standby_replicas,
        schedule=tuple(ScheduledMinimum(cron, n) for cron, n in sorted(spec.cron_minimums.items())),
        scale_to_zero=spec.scale_to_zero or low == 0,
        advisory=spec.advisory,
    )
    if spec.metrics_window_s:
        scaling = replace(scaling, metrics_window_s=float(spec.metrics_window_s))
    return scaling


def _scaling(behavior: Behavior) -> ScalingBehavior:
    return ScalingBehavior(
        float(behavior.stabilization_s), (RatePolicy(behavior.max_step, float(behavior.period_s)),)
    )


SPREAD_LABELS = ("zone", "rack")


def spread_tiers(
    used_nodes: Collection[str], labels: Mapping[str, Mapping[str, str]]
) -> tuple[frozenset[str], ...]:
    """The node sets a new replica should stay off, strongest first: every
    node of a zone its siblings use, of a rack they use, then their nodes."""
    used = set(used_nodes)
    if not used:
        return ()
    tiers: list[frozenset[str]] = []
    for key in SPREAD_LABELS:
        values = {labels.get(n, {}).get(key) for n in used} - {None, ""}
        if values:
            tier = frozenset(n for n, node in labels.items() if node.get(key) in values) | used
            if tier not in tiers:
                tiers.append(tier)
    if frozenset(used) not in tiers:
        tiers.append(frozenset(used))
    return tuple(tiers)
