"""`gpupool sim`: replay an openb trace through the placement engine, in memory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from scheduler.cli.admin_commands import CliContext
from scheduler.placement.policies import POLICY_NAMES
from scheduler.sim.report import (
    TABLE_LEVELS,
    curve,
    mean_unallocated,
    parse_seeds,
    published_curves,
    published_for,
    summary,
)
from scheduler.sim.run import SeedResult, simulate
from scheduler.sim.trace import read_nodes, read_pods
from scheduler.sim.variants import derive

# The default node and pod lists ship with gpupool (scheduler/sim/traces,
# SOURCE.md there); the whole trace with its variants and the paper's
# results may sit in a folder of its own (GPUPOOL_TRACE_DIR).
SHIPPED_TRACE = Path(__file__).resolve().parents[1] / "sim" / "traces"
# This project's checkouts keep the whole trace next to the repository.
SHARED_TRACE = Path(__file__).resolve().parents[2].parent / "shared/data/alibaba-gpu-v2023"
TRACE_DIR = Path(
    os.environ.get("GPUPOOL_TRACE_DIR")
    or (SHARED_TRACE if SHARED_TRACE.is_dir() else SHIPPED_TRACE)
)
_NODES, _PODS = "openb_node_list_gpu_node.csv", "openb_pod_list_default.csv"
DEFAULT_NODES = TRACE_DIR / _NODES if (TRACE_DIR / _NODES).exists() else SHIPPED_TRACE / _NODES
DEFAULT_PODS = TRACE_DIR / _PODS if (TRACE_DIR / _PODS).exists() else SHIPPED_TRACE / _PODS
PUBLISHED = TRACE_DIR / "fgd_expected_results/analysis_allo_discrete.csv"
ALL_POLICIES = ("random", "dotprod", "packing", "bestfit", "fgd", "fgd+used", "fgd+niche")


@click.command("sim")
@click.option(
    "--nodes",
    "nodes_path",
    type=click.Path(path_type=Path, exists=True),
    default=DEFAULT_NODES,
    show_default=True,
    help="Node list (sn,cpu_milli,...).",
)
@click.option(
    "--pods",
    "pods_path",
    type=click.Path(path_type=Path, exists=True),
    default=DEFAULT_PODS,
    show_default=True,
    help="Pod list (name,cpu_milli,...).",
)
@click.option(
    "--policy",
    type=click.Choice([*POLICY_NAMES, "all"]),
    default="fgd",
    show_default=True,
    help="Packing policy; all: random, dotprod, packing, bestfit, fgd, fgd+used, fgd+niche.",
)
@click.option("--seeds", default="42-51", show_default=True, help="e.g. 42-51 or 42,43.")
@click.option(
    "--mix",
    default=None,
    metavar="VARIANT",
    help="Derive a mix from the pods: gpushareNN, multigpuNN, gpuspecNN, cpuNNN.",
)
@click.option(
    "--tune",
    type=float,
    default=1.3,
    show_default=True,
    help="Inflate the workload to this multiple of GPU capacity.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a PNG of our curves against the published ones.",
)
@click.pass_obj
def sim(
    state: CliContext,
    nodes_path: Path,
    pods_path: Path,
    policy: str,
    seeds: str,
    mix: str | None,
    tune: float,
    plot_path: Path | None,
) -> None:
    """Replay a trace (the FGD paper's protocol) and report unallocated GPU %."""  # fmt: skip
    try:
        seed_list = parse_seeds(seeds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--seeds") from exc
    nodes = read_nodes(nodes_path)
    pods = read_pods(pods_path)
    workload = pods_path.stem
    if mix is not None:
        try:
            pods = derive(pods, mix, nodes)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--mix") from exc
        workload = f"openb_pod_list_{mix}"
    policies = list(ALL_POLICIES) if policy == "all" else [policy]
    # Tables and progress go to stderr under -o json, so stdout stays machine-readable.
    console = Console(stderr=state.json)
    results: dict[str, list[SeedResult]] = {}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:  # fmt: skip
        for name in policies:
            for seed in seed_list:
                task = progress.add_task(f"{name} seed {seed}", total=None)

                def advance(done: int, total: int, task: TaskID = task) -> None:
                    progress.update(task, completed=done, total=total)

                results.setdefault(name, []).append(
                    simulate(nodes, pods, name, seed, tune, advance)
                )
                progress.remove_task(task)
    published = published_curves(PUBLISHED, workload)
    console.print(_table(results, published, workload))
    if plot_path is not None:
        from scheduler.sim.plot import plot_curves  # matplotlib is slow to import: only here

        ours = {name: curve(runs) for name, runs in results.items()}
        plot_curves(ours, published, plot_path, f"{workload}, seeds {seeds}, tune {tune}")
        console.print(f"plot: {plot_path}")
    if state.json:
        for name, runs in results.items():
            click.echo(json.dumps(summary(name, runs)))


def _table(
    results: dict[str, list[SeedResult]], published: dict[str, list[float]], workload: str
) -> Table:
    table = Table(title=f"Unallocated GPU % by arrived workload ({workload}; paper in brackets)")
    table.add_column("arrived %", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    for level in TABLE_LEVELS:
        cells = [str(level)]
        for name, runs in results.items():
            ours = mean_unallocated(runs, level)
            paper = published_for(name, published)
            text = "-" if ours is None else f"{ours:.2f}"
            cells.append(text if paper is None else f"{text} [{paper[level]:.2f}]")
        table.add_row(*cells)
    seconds = [f"{summary(n, r)['seconds_per_seed']} s" for n, r in results.items()]
    table.add_row("s/seed", *seconds)
    return table
