"""Generation-aware placement: which GPU models each workload class prefers.

Per workload class, GPU models fall in three tiers: primary (tried first),
overflow (only when no primary GPU fits now) and never (filtered out, with
the reason shown). The default follows the placement matrix of the seed:

    latency-critical  B200 / H200 / H100 primary, A100-80GB overflow
    throughput        A100-80GB primary, newer parts overflow, A100-40GB only
                      when the model is quantized
    batch             older and cheaper parts first, anything else overflow
    small-model       (≤ 13B) A100-40GB primary, other mid-size parts overflow
    long-context      (≥ 128K) only the largest memory per GPU in the fleet
    unspecified       no preference

A YAML file (deploy/placement-policy.yaml, `gpupool serve --placement-policy`)
replaces the table; models it names must be in the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import InvalidArgument

OTHERS_CHOICES = ("never", "overflow", "primary")


@dataclass(frozen=True)
class ClassPreference:
    primary: tuple[str, ...] = ()
    overflow: tuple[str, ...] = ()
    # Overflow models allowed only for quantized weights (int8/int4/fp8).
    quantized_overflow: tuple[str, ...] = ()
    # Where models the lists do not name go.
    others: str = "primary"
    # Only the models with the most memory per GPU that the fleet has.
    largest_memory_only: bool = False


@dataclass(frozen=True)
class TierPlan:
    """What place() tries for one request: tiers in order, and the models it may never use."""

    tiers: tuple[frozenset[str], ...]
    never: frozenset[str]
    reason: str  # "not allowed for class batch"


@dataclass(frozen=True)
class GenerationPolicy:
    classes: Mapping[str, ClassPreference]

    def plan(
        self, workload_class: str, fleet_models: Iterable[str], quantized: bool = False
    ) -> TierPlan | None:
        """The tiers for this class on a fleet with these models; None: no preference."""
        preference = self.classes.get(workload_class)
        if preference is None:
            return None
        models = frozenset(fleet_models)
        if preference.largest_memory_only:
            # Only models we know the memory of compete; simulated models are left alone.
            known = {m: CATALOGUE[m].memory_mib for m in models if m in CATALOGUE}
            if not known:
                return None
            most = max(known.values())
            largest = frozenset(m for m, mib in known.items() if mib == most)
            return TierPlan((largest,), models - largest, _reason(workload_class, "largest"))
        primary = set(preference.primary) & models
        overflow = set(preference.overflow) & models
        if quantized:
            overflow |= set(preference.quantized_overflow) & models
        named = set(preference.primary) | set(preference.overflow)
        named |= set(preference.quantized_overflow)
        unnamed = models - named
        if preference.others == "primary":
            primary |= unnamed
        elif preference.others == "overflow":
            overflow |= unnamed
        overflow -= primary
        tiers = tuple(frozenset(t) for t in (primary, overflow) if t)
        never = models - primary - overflow
        return TierPlan(tiers, frozenset(never), _reason(workload_class, "never"))


def _reason(workload_class: str, kind: str) -> str:
    if kind == "largest":
        return f"not the largest GPU memory in the fleet, required for class {workload_class}"
    return f"not allowed for class {workload_class}"


DEFAULT_GENERATION_POLICY = GenerationPolicy(
    {
        "latency-critical": ClassPreference(
            primary=("B200", "H200", "H100-80GB", "H100-NVL"),
            overflow=("A100-80GB",),
            others="never",
        ),
        "throughput": ClassPreference(
            primary=("A100-80GB",),
            overflow=("H100-80GB", "H100-NVL", "H200", "B200"),
            quantized_overflow=("A100-40GB",),
            others="never",
        ),
        "batch": ClassPreference(
            primary=("A100-40GB", "A100-80GB", "L40S", "L4"),
            others="overflow",
        ),
        "small-model": ClassPreference(
            primary=("A100-40GB",),
            overflow=("L40S", "A100-80GB", "L4"),
            others="overflow",
        ),
        "long-context": ClassPreference(largest_memory_only=True),
    }
)


def policy_from_document(document: Mapping[str, Any]) -> GenerationPolicy:
    """Parse `workload_classes: {class: {primary, overflow, quantized_overflow, others,
    largest_memory_only}}`; InvalidArgument names the first mistake."""
    entries = document.get("workload_classes")
    if not isinstance(entries, Mapping):
        raise InvalidArgument("placement policy: expected a `workload_classes:` mapping")
    classes: dict[str, ClassPreference] = {}
    for name, entry in entries.items():
        entry = entry or {}
        if not isinstance(entry, Mapping):
            raise InvalidArgument(f"placement policy: class {name!r} must be a mapping")
        unknown = set(entry) - set(ClassPreference.__dataclass_fields__)
        if unknown:
            raise InvalidArgument(
                f"placement policy: class {name!r} has unknown keys {sorted(unknown)}"
            )
        lists = {k: tuple(entry.get(k, ())) for k in ("primary", "overflow", "quantized_overflow")}
        for key, models in lists.items():
            for model in models:
                if model not in CATALOGUE:
                    raise InvalidArgument(
                        f"placement policy: class {name!r} {key} names unknown GPU model "
                        f"{model!r} (known: {', '.join(CATALOGUE)})"
                    )
        others = str(entry.get("others", "primary"))
        if others not in OTHERS_CHOICES:
            raise InvalidArgument(
                f"placement policy: class {name!r} others must be one of {OTHERS_CHOICES}"
            )
        classes[str(name)] = ClassPreference(
            **lists, others=others, largest_memory_only=bool(entry.get("largest_memory_only"))
        )
    return GenerationPolicy(classes)
