"""The serving performance model's figures that tests only order: how much
faster B200 prefills than H100, INT4 decodes than FP16, and how long a model
takes to load from host RAM or local disk.

Run: python -m bench.performance_model
Pure (no network, no database); deterministic. JSON (last line):
b200_over_h100_prefill (llama-3.1-8b, one GPU), int4_over_fp16_decode
(llama-3.1-70b on 2× A100-80GB, per sequence), cold_start_s by tier for
llama-3.1-8b FP16 on H100-80GB (16 GB of weights). Datasheet sources:
../shared/gpus.md.
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.table import Table

from scheduler.domain.auto_layout import ModelCapacity
from scheduler.domain.deployments import DeploymentSpec, Variant, candidates, cold_start_s
from scheduler.serving.performance import engine_performance


def figures() -> dict[str, object]:
    h100 = engine_performance("H100-80GB", "llama-3.1-8b", dtype="fp16")
    b200 = engine_performance("B200", "llama-3.1-8b", dtype="fp16")
    fp16 = engine_performance("A100-80GB", "llama-3.1-70b", dtype="fp16", gpu_count=2)
    int4 = engine_performance("A100-80GB", "llama-3.1-70b", dtype="int4", gpu_count=2)
    spec = DeploymentSpec(
        name="chat",
        tenant="bench",
        model="llama-3.1-8b",
        engine="sim-engine",
        variants=(Variant("fp16", "fp16", ("H100-80GB",)),),
    )
    found, _ = candidates(spec, {"H100-80GB": ModelCapacity(8, 16)}, None)
    return {
        "b200_over_h100_prefill": round(b200.prefill_tokens_per_s / h100.prefill_tokens_per_s, 2),
        "int4_over_fp16_decode": round(
            int4.per_sequence_decode_tokens_per_s() / fp16.per_sequence_decode_tokens_per_s(), 2
        ),
        "cold_start_s": {
            tier: round(cold_start_s(spec, found[0], tier), 3)
            for tier in ("gpu", "host_ram", "local_disk")
        },
    }


def main() -> None:
    result = figures()
    table = Table(title="serving performance model")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in result.items():
        table.add_row(key, json.dumps(value))
    Console(stderr=True).print(table)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
