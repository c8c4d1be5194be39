"""route-sim's replay: traces, fleet specs, load scaling and the metrics it reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scheduler.domain.errors import InvalidArgument
from scheduler.routing.replay.run import (
    build_fleet,
    capacity_requests_per_s,
    parse_fleet,
    replay,
    scale_to_load,
)
from scheduler.routing.replay.trace import load_trace


def mooncake(tmp_path: Path, conversations: int = 21, turns: int = 4) -> Path:
    """Multi-turn conversations: each turn extends the previous turn's blocks."""
    rows: list[dict[str, Any]] = []
    next_id = 1
    for c in range(conversations):
        chain = [0]
        for t in range(turns):
            new = list(range(next_id, next_id + 4))
            next_id += 4
            chain = chain + new
            rows.append({"timestamp": (t * 40 + c) * 1000, "input_length": 512 * len(chain),
                         "output_length": 50, "hash_ids": list(chain)})  # fmt: skip
    rows.sort(key=lambda r: r["timestamp"])
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_loads_mooncake_and_azure(tmp_path: Path) -> None:
    trace = load_trace(mooncake(tmp_path))
    assert trace.block_tokens == 512 and len(trace.requests) == 84
    assert trace.requests[0].blocks[0] == 0
    azure = tmp_path / "azure.csv"
    azure.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:47.1805900,1200,7\n"
    )
    trace = load_trace(azure)
    assert [r.prompt_tokens for r in trace.requests] == [374, 1200]
    assert trace.span_s == pytest.approx(0.5)
    assert trace.requests[0].blocks == ()


def test_bad_traces_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"timestamp": 0, "input_length": 10, "output_length": 1}\n{"timestamp": 1}\n')
    with pytest.raises(InvalidArgument, match="line 2"):
        load_trace(bad)
    csv = tmp_path / "bad.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(InvalidArgument, match="TIMESTAMP"):
        load_trace(csv)


def test_fleet_specs() -> None:
    groups = parse_fleet("4xB200, 6xH100-80GB/tp2, 6xA100-80GB/int4")
    assert [(g.count, g.gpu_model, g.dtype, g.gpu_count) for g in groups] == [
        (4, "B200", None, 1), (6, "H100-80GB", None, 2), (6, "A100-80GB", "int4", 1),
    ]  # fmt: skip
    assert len(build_fleet("2xB200,1xA100-80GB/int4", "llama-3.1-8b")) == 3
    for bad in ("", "B200", "0xB200", "2xZ80"):
        with pytest.raises(InvalidArgument):
            build_fleet(bad, "llama-3.1-8b")
    with pytest.raises(InvalidArgument, match="does not fit"):
        build_fleet("1xA100-40GB/fp16", "llama-3.1-70b")


def test_load_scaling_hits_the_asked_share_of_capacity(tmp_path: Path) -> None:
    trace = load_trace(mooncake(tmp_path))
    fleet = build_fleet("2xH100-80GB", "llama-3.1-8b")
    scaled = scale_to_load(trace, fleet, 0.5)
    offered = len(scaled.requests) / scaled.span_s
    assert offered == pytest.approx(0.5 * capacity_requests_per_s(trace, fleet))


def test_prefix_aware_routing_finds_the_cached_turns(tmp_path: Path) -> None:
    trace = load_trace(mooncake(tmp_path))
    fleet = build_fleet("4xH100-80GB", "llama-3.1-8b")
    scaled = scale_to_load(trace, fleet, 0.5)
    rr = replay(scaled, fleet, "round_robin")
    best = replay(scaled, fleet, "weighted")
    assert best.hit_rate > 2 * rr.hit_rate
    # Every turn after the first could reuse the previous prompt: at most 3/4 of the turns.
    assert best.hit_rate < 0.75
    for result in (rr, best):
        assert result.ttft_p50_s <= result.ttft_p99_s
        assert result.output_tokens_per_s > 0
        assert sum(result.per_replica.values()) == 84


def test_no_shared_prefixes_means_no_hits(tmp_path: Path) -> None:
    trace = load_trace(mooncake(tmp_path)).without_prefixes()
    fleet = build_fleet("2xH100-80GB", "llama-3.1-8b")
    result = replay(scale_to_load(trace, fleet, 0.7), fleet, "weighted")
    assert result.hit_rate == 0
