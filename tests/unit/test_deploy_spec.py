"""Pure parts of deployments: spec checks, candidates per variant and GPU
model, the allocation a replica asks for, and the spread over failure domains."""

from __future__ import annotations

import pytest

from scheduler.domain.auto_layout import ModelCapacity
from scheduler.domain.deployments import (
    DeploymentSpec,
    Variant,
    autoscaling_spec,
    candidates,
    cold_start_s,
    load_tier,
    replica_allocation,
    spread_tiers,
    validate_deployment,
)
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.worker_templates import DEFAULT_TEMPLATES_FILE, load_templates

TEMPLATES = load_templates(DEFAULT_TEMPLATES_FILE)
FLEET = {
    "H100-80GB": ModelCapacity(8, 16),
    "H200": ModelCapacity(8, 8),
    "A100-40GB": ModelCapacity(4, 4),
}


def _spec(**fields: object) -> DeploymentSpec:
    values: dict[str, object] = {
        "name": "chat",
        "tenant": "team-a",
        "model": "llama-3.1-70b",
        "engine": "sim-engine",
        "min_replicas": 1,
        "max_replicas": 4,
        "variants": (
            Variant("fp16", "fp16", ("H100-80GB", "H200")),
            Variant("int4", "int4", ("A100-40GB",)),
        ),
    }
    values.update(fields)
    return validate_deployment(DeploymentSpec(**values), TEMPLATES)  # type: ignore[arg-type]


def test_defaults_are_the_issues() -> None:
    spec = _spec()
    assert spec.target_kv == 0.70
    assert (spec.scale_up.stabilization_s, spec.scale_up.max_step, spec.scale_up.period_s) == (
        60,
        2,
        120,
    )
    assert (spec.scale_down.stabilization_s, spec.scale_down.max_step) == (300, 1)
    scaling = autoscaling_spec(spec)
    assert scaling.scale_up.policies[0].replicas == 2
    assert autoscaling_spec(spec, manual_replicas=3).min_replicas == 3
    assert DeploymentSpec.from_json(spec.as_json()) == spec


def test_each_variant_and_gpu_model_is_a_candidate_with_its_own_layout() -> None:
    found, reasons = candidates(_spec(), FLEET, None)
    described = [(c.variant.name, c.gpu_model, c.tp) for c in found]
    # 70B in FP16 (140 GB) needs two H100s or H200s; in INT4 (35 GB) one A100-40GB.
    assert described == [("fp16", "H100-80GB", 2), ("fp16", "H200", 2), ("int4", "A100-40GB", 1)]
    assert reasons == []


def test_a_replica_allocation_pins_its_gpu_model_and_fills_the_engine_arguments() -> None:
    spec = _spec()
    template = TEMPLATES["sim-engine"]
    found, _ = candidates(spec, FLEET, None)
    request = replica_allocation(spec, template, found[2], "r1", 18007, no_wait=True)
    assert request.gpu_models == ("A100-40GB",)
    assert request.layout is not None and request.layout.tp == 1
    assert request.worker is not None
    assert request.worker.args["port"] == "18007"
    assert request.worker.args["gpu_model"] == "A100-40GB"
    assert request.worker.args["dtype"] == "int4"
    assert request.worker.args["served_model_name"] == "llama-3.1-70b"
    assert request.labels["gpupool.io/deployment"] == "chat"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_replicas": 0, "min_replicas": 0}, "min_replicas"),
        ({"cron_minimums": {"0 9 * * 1-5": 9}}, "cron_minimums"),
        ({"variants": (Variant("x", "fp5"),)}, "variants[0].dtype"),
        ({"variants": (Variant("x", "fp16", (), 3),)}, "variants[0].tp"),
        ({"engine_args": {"extra_args": "--trust-remote-code"}}, "engine_args"),
        ({"routing": "fastest"}, "routing"),
    ],
)
def test_bad_specs_name_the_field(fields: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field.replace("[", r"\[").replace("]", r"\]")):
        _spec(**fields)


def test_spread_avoids_zones_then_racks_then_nodes() -> None:
    labels = {
        "a1": {"zone": "a", "rack": "r1"},
        "a2": {"zone": "a", "rack": "r2"},
        "b1": {"zone": "b", "rack": "r3"},
    }
    assert spread_tiers([], labels) == ()
    tiers = spread_tiers(["a1"], labels)
    assert tiers == (frozenset({"a1", "a2"}), frozenset({"a1"}))
    assert spread_tiers(["x"], {}) == (frozenset({"x"}),)


def test_cold_start_comes_from_the_warmest_tier_on_the_node() -> None:
    spec = _spec(model="llama-3.1-8b", variants=(Variant("fp16", "fp16", ("H100-80GB",)),))
    found, _ = candidates(spec, FLEET, None)
    resident = [
        ("h100-0", "host_ram", ""),
        ("h100-1", "gpu", "GPU-1"),
        ("h100-2", "local_disk", ""),
    ]
    assert load_tier(resident, "h100-0", {"GPU-0"}) == "host_ram"
    assert load_tier(resident, "h100-1", {"GPU-1"}) == "gpu"
    assert load_tier(resident, "h100-1", {"GPU-7"}) == "remote"  # another GPU holds it
    assert load_tier(resident, "h100-2", set()) == "local_disk"
    # 16 GB of FP16 weights: 0 s warm, 16 GB ÷ 50 GB/s over PCIe 5, ÷ 5 GB/s from disk.
    seconds = {t: cold_start_s(spec, found[0], t) for t in ("gpu", "host_ram", "local_disk")}
    assert seconds["gpu"] == 0.0
    assert seconds["local_disk"] == pytest.approx(10 * seconds["host_ram"])
    assert 0.0 < seconds["host_ram"] < seconds["local_disk"]  # figures: bench.performance_model
