"""place() for parallel layouts on a 10,000-GPU fleet at ~70% use.

Run: python -m bench.layout_placement [--gpus 10000] [--samples 300] [--seed 1]
The fleet and churn are bench.placement_micro's. Times place() for a few
gang layouts, and a plain 8-GPU whole request as the baseline in the same
run; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.placement_micro import Churn, churned_fleet, percentile
from scheduler.domain.layout import ParallelLayout
from scheduler.domain.requests import PlacementRequest, WholeDemand
from scheduler.placement import place

LAYOUTS = {
    "tp8_pp2": ParallelLayout(tp=8, pp=2),
    "tp4_replicas4": ParallelLayout(tp=4, replicas=4),
    "tp2_cp2_pp2": ParallelLayout(tp=2, cp=2, pp=2),
    "tp8_pp4_replicas2": ParallelLayout(tp=8, pp=4, replicas=2),
}


def time_request(
    churn: Churn, request: PlacementRequest, samples: int
) -> tuple[float, float, float]:
    """(p50 µs, p99 µs, share placed) over `samples` tries on a churning fleet."""
    timings: list[float] = []
    placed = 0
    for _ in range(samples):
        started = time.perf_counter()
        outcome = place(churn.snapshot, request)
        timings.append((time.perf_counter() - started) * 1e6)
        placed += outcome.placement is not None
        churn.run(20)  # move the fleet on between samples
    return percentile(timings, 50), percentile(timings, 99), placed / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    churn = churned_fleet(args.gpus, args.seed, 20_000)
    snapshot = churn.snapshot
    result: dict[str, float] = {"gpus": len(snapshot.gpus)}
    baseline = PlacementRequest(WholeDemand(8), gpu_models=frozenset({"H100-80GB"}))
    p50, p99, _ = time_request(churn, baseline, args.samples)
    result.update(whole8_p50_us=round(p50, 1), whole8_p99_us=round(p99, 1))
    print(f"baseline whole 8 GPUs: p50 {p50:.0f} us, p99 {p99:.0f} us")
    for name, layout in LAYOUTS.items():
        request = PlacementRequest(
            WholeDemand(layout.world_size), gpu_models=frozenset({"H100-80GB"}), layout=layout
        )
        p50, p99, share = time_request(churn, request, args.samples)
        result[f"{name}_p50_us"] = round(p50, 1)
        result[f"{name}_p99_us"] = round(p99, 1)
        result[f"{name}_ratio_to_whole8"] = round(p50 / result["whole8_p50_us"], 1)
        print(f"layout {name}: p50 {p50:.0f} us, p99 {p99:.0f} us, placed {share:.0%}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
