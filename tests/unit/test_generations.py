"""The generation policy: tiers per workload class, and place() honouring them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scheduler.domain.errors import InvalidArgument
from scheduler.domain.fleet import FleetSnapshot
from scheduler.domain.generations import (
    DEFAULT_GENERATION_POLICY,
    GenerationPolicy,
    policy_from_document,
)
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.requests import FractionDemand, PlacementRequest, WholeDemand
from scheduler.placement import PlacementConfig, PlacementOutcome, place
from tests.unit.test_fleet_snapshot import fleet, make_node, whole

MIXED = ("B200", "H200", "H100-80GB", "A100-80GB", "A100-40GB", "L40S", "L4")
POLICY_FILE = Path(__file__).parents[2] / "deploy" / "placement-policy.yaml"
CONFIG = PlacementConfig(generation_policy=DEFAULT_GENERATION_POLICY)


def tiers(workload_class: str, quantized: bool = False) -> list[set[str]]:
    plan = DEFAULT_GENERATION_POLICY.plan(workload_class, MIXED, quantized)
    assert plan is not None
    return [set(t) for t in plan.tiers]


def test_latency_critical_prefers_the_newest_parts_and_overflows_to_a100_80() -> None:
    assert tiers("latency-critical") == [{"B200", "H200", "H100-80GB"}, {"A100-80GB"}]
    plan = DEFAULT_GENERATION_POLICY.plan("latency-critical", MIXED)
    assert plan is not None and plan.never == {"A100-40GB", "L40S", "L4"}


def test_throughput_takes_a100_40_only_when_quantized() -> None:
    assert tiers("throughput") == [{"A100-80GB"}, {"H100-80GB", "H200", "B200"}]
    assert "A100-40GB" in tiers("throughput", quantized=True)[1]


def test_small_models_go_to_a100_40_first() -> None:
    assert tiers("small-model")[0] == {"A100-40GB"}
    assert {"L40S", "L4", "A100-80GB", "B200"} <= tiers("small-model")[1]


def test_long_context_takes_only_the_largest_memory_in_the_fleet() -> None:
    assert tiers("long-context") == [{"B200"}]
    plan = DEFAULT_GENERATION_POLICY.plan("long-context", ("H200", "A100-80GB"))
    assert plan is not None and plan.tiers == (frozenset({"H200"}),)


def test_unspecified_has_no_preference() -> None:
    assert DEFAULT_GENERATION_POLICY.plan("unspecified", MIXED) is None


def test_the_shipped_policy_file_is_the_built_in_default() -> None:
    document = yaml.safe_load(POLICY_FILE.read_text())
    assert policy_from_document(document) == DEFAULT_GENERATION_POLICY


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({}, "expected a `workload_classes:` mapping"),
        ({"workload_classes": {"batch": {"primary": ["V100"]}}}, "unknown GPU model 'V100'"),
        ({"workload_classes": {"batch": {"others": "maybe"}}}, "others must be one of"),
        ({"workload_classes": {"batch": {"prefer": ["L4"]}}}, "unknown keys ['prefer']"),
    ],
)
def test_policy_files_with_mistakes_say_which(document: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        policy_from_document(document)
    assert message in str(raised.value)


def mixed_fleet() -> FleetSnapshot:
    return fleet(
        make_node("h100", "H100-80GB", count=2),
        make_node("a100", "A100-80GB", count=2),
        make_node("l40s", "L40S", count=4, links="none"),
    )


def ask(
    snapshot: FleetSnapshot, workload_class: str, demand: WholeDemand | FractionDemand
) -> PlacementOutcome:
    return place(snapshot, PlacementRequest(demand, workload_class=workload_class), CONFIG)


def node_of(snapshot: FleetSnapshot, outcome: PlacementOutcome) -> str:
    assert outcome.placement is not None, outcome.reasons
    return snapshot.gpus[outcome.placement.claims[0].gpu_id].node


def test_latency_critical_takes_primary_over_a_better_packed_overflow_gpu() -> None:
    snapshot = mixed_fleet()
    snapshot.reserve([whole(snapshot.nodes["a100"].gpus[0])])  # best fit would pick a100
    assert node_of(snapshot, ask(snapshot, "unspecified", WholeDemand(1))) == "a100"
    assert node_of(snapshot, ask(snapshot, "latency-critical", WholeDemand(1))) == "h100"


def test_overflow_only_when_primary_is_full_and_never_is_never() -> None:
    snapshot = mixed_fleet()
    snapshot.reserve([whole(g) for g in snapshot.nodes["h100"].gpus])
    assert node_of(snapshot, ask(snapshot, "latency-critical", WholeDemand(2))) == "a100"
    snapshot.reserve([whole(g) for g in snapshot.nodes["a100"].gpus])
    outcome = ask(snapshot, "latency-critical", WholeDemand(1))
    assert outcome.placement is None  # four idle L40S, but never for this class
    reasons = {(r.plugin, r.reason) for r in outcome.reasons}
    assert (
        "GenerationAllowed",
        "generation L40S not allowed for class latency-critical",
    ) in reasons


def test_a_class_that_only_fits_excluded_parts_is_unschedulable_and_says_why() -> None:
    snapshot = fleet(make_node("l40s", "L40S", count=4, links="none"))
    outcome = ask(snapshot, "throughput", WholeDemand(1))
    assert outcome.unschedulable
    assert outcome.reasons[-1].plugin == "GenerationAllowed"
    assert "L40S: not allowed for class throughput" in outcome.reasons[-1].reason


def test_layouts_follow_the_policy_too() -> None:
    snapshot = mixed_fleet()
    request = PlacementRequest(
        WholeDemand(2), workload_class="throughput", layout=ParallelLayout(tp=2)
    )
    outcome = place(snapshot, request, CONFIG)
    assert node_of(snapshot, outcome) == "a100"


def test_custom_policy_from_a_document() -> None:
    policy = policy_from_document(
        {"workload_classes": {"batch": {"primary": ["L40S"], "others": "never"}}}
    )
    assert isinstance(policy, GenerationPolicy)
    snapshot = mixed_fleet()
    outcome = place(
        snapshot,
        PlacementRequest(FractionDemand(500, 1000), workload_class="batch"),
        PlacementConfig(generation_policy=policy),
    )
    assert node_of(snapshot, outcome) == "l40s"
