"""`gpupool route-sim` (replay a trace through the routing policies), `gpupool route
explain` and `gpupool gateway` (the OpenAI-compatible gateway)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from scheduler.cli.admin_commands import CliContext
from scheduler.domain.errors import GpupoolError
from scheduler.routing.policies import DEFAULT_POLICY
from scheduler.routing.replay.run import (
    DEFAULT_FLEET,
    DEFAULT_MODEL,
    REPLAY_POLICIES,
    PolicyResult,
    build_fleet,
    replay,
    scale_to_load,
)
from scheduler.routing.replay.trace import load_trace

# The shared data folder sits next to the repository: <repo>/../shared/data/...
LLM_TRACE_DIR = Path(
    os.environ.get(
        "GPUPOOL_LLM_TRACE_DIR",
        Path(__file__).resolve().parents[2].parent / "shared/data/llm-traces",
    )
)
DEFAULT_TRACE = LLM_TRACE_DIR / "mooncake_conversation_trace.jsonl"


@click.command("route-sim")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=DEFAULT_TRACE,
    show_default=True,
    help="Mooncake JSONL (timestamp ms, input_length, output_length, hash_ids) or Azure CSV.",
)
@click.option(
    "--fleet",
    default=DEFAULT_FLEET,
    show_default=True,
    help="COUNTxGPU[/DTYPE][/tpN], comma-separated; one replica per COUNT.",
)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="LLM catalogue name.")
@click.option(
    "--load",
    type=float,
    default=0.9,
    show_default=True,
    help="Offered load as a share of the fleet's capacity (all prompt tokens uncached).",
)
@click.option(
    "--policy",
    type=click.Choice([*REPLAY_POLICIES, "all"]),
    default="all",
    show_default=True,
    help="One policy, or all of them (round_robin is always run as the baseline).",
)
@click.option(
    "--no-shared-prefixes",
    is_flag=True,
    help="Make every prompt block unique (the same sizes and arrivals, nothing to reuse).",
)
@click.option("--limit", type=int, default=None, help="Replay only the first N requests.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a PNG: TTFT, hit rate and imbalance per policy.",
)
@click.pass_obj
def route_sim(
    state: CliContext,
    trace_path: Path,
    fleet: str,
    model: str,
    load: float,
    policy: str,
    no_shared_prefixes: bool,
    limit: int | None,
    plot_path: Path | None,
) -> None:
    """Replay an LLM request trace through the routing policies on a simulated fleet.

    The policies are the gateway's own code; replicas run the simulated
    engine's performance, prefix-cache and batching model. The last line
    printed is one JSON object with every policy's figures.
    """
    console = Console(stderr=True, width=130)
    try:
        trace = load_trace(trace_path, limit)
        if no_shared_prefixes:
            trace = trace.without_prefixes()
        replicas = build_fleet(fleet, model)
        scaled = scale_to_load(trace, replicas, load)
    except GpupoolError as exc:
        raise click.UsageError(exc.message) from None
    names = list(REPLAY_POLICIES) if policy == "all" else ["round_robin", policy]
    names = list(dict.fromkeys(names))
    console.print(
        f"{trace.name}: {len(trace.requests)} requests; fleet {fleet} ({len(replicas)} replicas, "
        f"{model}); load {load} -> {len(scaled.requests) / scaled.span_s:.2f} req/s"
    )
    results: list[PolicyResult] = []
    for name in names:
        console.print(f"replaying {name} …")
        results.append(replay(scaled, replicas, name, progress=console.print))
    baseline = results[0]
    console.print(_table(results, baseline))
    for line in _targets(results, baseline):
        console.print(line)
    if plot_path is not None:
        from scheduler.routing.replay.plot import plot_replay  # matplotlib: slow to import

        plot_replay(results, plot_path, f"{trace.name}, {fleet}, {model}, load {load}")
        console.print(f"plot: {plot_path}")
    click.echo(
        json.dumps(
            {
                "trace": trace.name,
                "load": load,
                "fleet": fleet,
                "model": model,
                "default_policy": DEFAULT_POLICY,
                "policies": {r.policy: r.figures() for r in results},
            }
        )
    )
    del state


def _ratio(value: float, base: float) -> str:
    return "-" if base == 0 else f"{value / base:.3g}×"


def _table(results: list[PolicyResult], baseline: PolicyResult) -> Table:
    table = Table(title="Routing policies (ratios to round_robin in brackets)")
    for column in ("policy", "hit rate", "imbalance p99", "TTFT mean", "TTFT p50",
                   "TTFT p99", "output tok/s"):  # fmt: skip
        table.add_column(column, justify="left" if column == "policy" else "right")
    for r in results:
        table.add_row(
            r.policy + (" (default)" if r.policy == DEFAULT_POLICY else ""),
            f"{r.hit_rate:.1%} [{_ratio(r.hit_rate, baseline.hit_rate)}]",
            f"{r.imbalance_p99:.2f}",
            f"{r.ttft_mean_s:.3f} s [{_ratio(r.ttft_mean_s, baseline.ttft_mean_s)}]",
            f"{r.ttft_p50_s:.3f} s",
            f"{r.ttft_p99_s:.3f} s [{_ratio(r.ttft_p99_s, baseline.ttft_p99_s)}]",
            f"{r.output_tokens_per_s:,.0f}",
        )
    return table


def _targets(results: list[PolicyResult], baseline: PolicyResult) -> list[str]:
    by_name = {r.policy: r for r in results}
    default = by_name.get(DEFAULT_POLICY)
    if default is None or default is baseline:
        return []
    lines = [
        f"default hit rate {_ratio(default.hit_rate, baseline.hit_rate)} round_robin's "
        "(target on the shared trace: >= 4×)",
        f"default TTFT mean {_ratio(default.ttft_mean_s, baseline.ttft_mean_s)} round_robin's "
        "(target: <= 0.05×)",
    ]
    if "token_load" in by_name:
        lines.append(
            f"default TTFT mean {_ratio(default.ttft_mean_s, by_name['token_load'].ttft_mean_s)} "
            "token_load's (target: <= 0.75×)"
        )
    singles = [r for r in results if r.policy not in (DEFAULT_POLICY, "session")]
    best = min(singles, key=lambda r: r.ttft_mean_s)
    lines.append(
        f"default TTFT mean {_ratio(default.ttft_mean_s, best.ttft_mean_s)} the best single "
        f"policy's ({best.policy}; target without shared prefixes: <= 1.1×)"
    )
    return lines
