"""A day of demand through the autoscaler's decide(), with and without standby
and predictive minimums.

Run: python -m bench.autoscale [--model llama-3.1-70b --dtype fp16 --gpu H100-80GB]
     [--tick 15] [--standby 1] [--seed 7] [--hours 24]

The demand (in replica units: 1.0 fills one replica's KV cache) on a weekday:
a diurnal curve (2 at 03:00, 8 at 15:00), a spike to +6 at 09:00 for 45
minutes (fading over 15), and from 13:00 to 16:00 a square wave of +3
(--square) with a 10-minute period. Its first edge is a surge nobody
predicted: 7.6 → 10.6 units on 10 serving replicas (0.76 KV, inside the
10 % tolerance), so one standby replica covers it; with --square 3.5 or 4
one more replica is missing until a cold start ends (see the README).
It is replayed second by second through
scheduler.autoscaling.replay (decide() every --tick seconds, as the
reconcile loop would) twice:

- **ours**: min 2, max 24, standby --standby, the predictive minimum
  `"0 9 * * 1-5": 14` (applied 10 minutes early), panic at 1.5 × target;
- **plain**: the same with standby and the predictive minimum off.

A cold start is placement (2 s) + the weights from the tier they are found
in (scheduler/domain/model_loading.py bandwidths; tiers drawn 30 % host RAM,
40 % local NVMe, 30 % remote, seeded) + engine start-up (--engine-init-s,
60 s: CUDA graphs and the KV-cache allocation). A standby promotion is the
gateway learning of the replica (--promotion-s, 1 s: its weights are on the
GPUs already): modelled, not measured here.

Figures: flaps (a reversal of direction within the longer stabilisation
window), replica_hours (every replica holding GPUs: starting, ready,
standby, draining), slo_violation_minutes (demand above the READY
replicas), the same two for plain, and the p50 of promotions and cold
starts. Targets: flaps 0; SLO-violation minutes at least 80 % below plain
at no more than 15 % more replica-hours; standby promotion under 5 s.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime

from bench.placement_micro import percentile
from scheduler.autoscaling import AutoscalingSpec, ScheduledMinimum
from scheduler.autoscaling.replay import ReplayConfig, ReplayResult, replay, with_plain
from scheduler.domain.llm_catalogue import lookup
from scheduler.domain.model_loading import DEFAULT_BANDWIDTHS, HOST_RAM, LOCAL_DISK, REMOTE

DAY = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
TIER_MIX = ((HOST_RAM, 0.3), (LOCAL_DISK, 0.4), (REMOTE, 0.3))
PLACEMENT_S = 2.0


def demand(now: datetime, square: float = 3.0) -> float:
    """Replica units wanted at `now` (see the module docstring)."""
    hour = (now - DAY).total_seconds() / 3600.0
    load = 2.0 + 6.0 * math.sin(math.pi * (hour - 3.0) / 24.0) ** 2
    if 9.0 <= hour < 9.75:
        load += 6.0
    elif 9.75 <= hour < 10.0:
        load += 6.0 * (10.0 - hour) / 0.25
    if 13.0 <= hour < 16.0 and int((hour - 13.0) * 60) // 5 % 2 == 0:
        load += square
    return load


def cold_start_sampler(
    model: str, dtype: str, gpu: str, engine_init_s: float, seed: int
) -> tuple[Callable[[], float], dict[str, float]]:
    """A draw() of cold starts, and the seconds per tier (for the printout)."""
    llm, _ = lookup(model)
    if llm is None:
        raise SystemExit(f"unknown model {model!r}")
    size = llm.weight_bytes(dtype)
    per_tier = {
        tier: PLACEMENT_S + DEFAULT_BANDWIDTHS.seconds(size, tier, gpu) + engine_init_s
        for tier, _ in TIER_MIX
    }
    rng = random.Random(seed)
    tiers = [t for t, _ in TIER_MIX]
    weights = [w for _, w in TIER_MIX]

    def draw() -> float:
        return per_tier[rng.choices(tiers, weights)[0]]

    return draw, per_tier


def spec_of(standby: int) -> AutoscalingSpec:
    return AutoscalingSpec(
        min_replicas=2,
        max_replicas=24,
        standby=standby,
        schedule=(ScheduledMinimum("0 9 * * 1-5", 14, hold_s=3600.0),),
        predictive_lead_s=600.0,
        panic_threshold=1.5,
    )


def run_one(name: str, spec: AutoscalingSpec, args: argparse.Namespace, seed: int) -> ReplayResult:
    draw, _ = cold_start_sampler(args.model, args.dtype, args.gpu, args.engine_init_s, seed)
    config = ReplayConfig(
        spec,
        cold_start_s=draw,
        tick_s=args.tick,
        promotion_s=args.promotion_s,
        initial_ready=math.ceil(demand(DAY) / spec.target_kv_utilisation),
        initial_standby=spec.standby,
    )

    def progress(share: float) -> None:
        if share and round(share * args.hours) % 6 == 0:
            print(f"  {name}: {share * args.hours:4.0f} h simulated", flush=True)

    def wanted(now: datetime) -> float:
        return demand(now, args.square)

    return replay(config, wanted, DAY, int(args.hours * 3600), progress=progress)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="llama-3.1-70b")
    parser.add_argument("--dtype", default="fp16")
    parser.add_argument("--gpu", default="H100-80GB")
    parser.add_argument("--tick", type=float, default=15.0)
    parser.add_argument("--standby", type=int, default=1)
    parser.add_argument("--promotion-s", type=float, default=1.0)
    parser.add_argument("--engine-init-s", type=float, default=60.0)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--square", type=float, default=3.0, help="square wave amplitude")
    parser.add_argument("--reasons", action="store_true", help="print every scaling reason")
    args = parser.parse_args()

    _, per_tier = cold_start_sampler(args.model, args.dtype, args.gpu, args.engine_init_s, 0)
    print(f"{args.model} {args.dtype} on {args.gpu}: cold start per tier", flush=True)
    for tier, seconds in per_tier.items():
        print(f"  {tier:<10} {seconds:7.1f} s", flush=True)
    spec = spec_of(args.standby)
    print("replaying ours (standby, predictive minimum)", flush=True)
    ours = run_one("ours", spec, args, args.seed)
    print("replaying plain (no standby, no predictive minimum)", flush=True)
    plain = run_one("plain", with_plain(spec), args, args.seed)
    if args.reasons:
        for label, result in (("ours", ours), ("plain", plain)):
            for line in result.reasons:
                print(f"  {label} {line}")

    print(f"{'':<28}{'ours':>12}{'plain':>12}")
    rows = [
        ("flaps", ours.flaps, plain.flaps),
        (
            "scale-ups / downs",
            f"{ours.scale_ups}/{ours.scale_downs}",
            f"{plain.scale_ups}/{plain.scale_downs}",
        ),
        ("replica-hours", f"{ours.replica_hours:.1f}", f"{plain.replica_hours:.1f}"),
        (
            "SLO-violation minutes",
            f"{ours.slo_violation_minutes:.1f}",
            f"{plain.slo_violation_minutes:.1f}",
        ),
        ("cold starts", len(ours.cold_starts_s), len(plain.cold_starts_s)),
        ("promotions", len(ours.promotions_s), len(plain.promotions_s)),
    ]
    for label, a, b in rows:
        print(f"{label:<28}{a!s:>12}{b!s:>12}")
    slo_cut = (
        1.0 - ours.slo_violation_minutes / plain.slo_violation_minutes
        if plain.slo_violation_minutes
        else 0.0
    )
    extra_hours = ours.replica_hours / plain.replica_hours - 1.0 if plain.replica_hours else 0.0
    print(
        f"SLO-violation minutes {slo_cut:.0%} below plain (target ≥ 80 %) at "
        f"{extra_hours:+.1%} replica-hours (target ≤ +15 %)"
    )
    figures = {
        "flaps": ours.flaps,
        "flaps_plain": plain.flaps,
        "replica_hours": round(ours.replica_hours, 2),
        "slo_violation_minutes": round(ours.slo_violation_minutes, 2),
        "replica_hours_plain": round(plain.replica_hours, 2),
        "slo_violation_minutes_plain": round(plain.slo_violation_minutes, 2),
        "slo_violation_reduction": round(slo_cut, 3),
        "replica_hours_extra": round(extra_hours, 3),
        "standby_promotion_s_p50": round(percentile(ours.promotions_s, 50), 2),
        "cold_start_s_p50": round(percentile(ours.cold_starts_s + plain.cold_starts_s, 50), 1),
        "model": args.model,
        "gpu": args.gpu,
        "tick_s": args.tick,
        "square": args.square,
        "seed": args.seed,
        "hours": args.hours,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
