"""`gpupool sim`: replay published openb traces through the placement engine, in memory."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from scheduler.cli.admin_commands import CliContext
from scheduler.placement.fragmentation import RequestMix
from scheduler.placement.policies import DEFAULT_PACKING_POLICY, SIM_POLICY_NAMES, make_scorer
from scheduler.sim.batch import Job, run_jobs
from scheduler.sim.report import (
    PUBLISHED_POLICY,
    TABLE_LEVELS,
    curve,
    markdown_matrix,
    matrix_rows,
    mean_unallocated,
    parse_seeds,
    published_curves,
    published_for,
    summary,
)
from scheduler.sim.run import SeedResult
from scheduler.sim.traces import (
    available_traces,
    default_nodes,
    resolve_pods,
    shared_dir,
    trace_name,
)
from scheduler.sim.variants import VARIANT

# The paper's six policies and ours: what `--policy all` runs.
ALL_POLICIES = (
    "random",
    "dotprod",
    "clustering",
    "packing",
    "bestfit",
    "fgd",
    DEFAULT_PACKING_POLICY,
)


# What --baseline-seeds applies to: the paper's six policies as we reproduce them
# (our own policies always run --seeds).
BASELINES = frozenset({"random", "dotprod", "clustering", "packing", "bestfit", "fgd"})


def published_csv() -> Path:
    return shared_dir() / "fgd_expected_results/analysis_allo_discrete.csv"


def _policies(text: str) -> list[str]:
    names: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            names.extend(p for p in ALL_POLICIES if p not in names)
        elif part in SIM_POLICY_NAMES or _is_fgd_variant(part):
            if part not in names:
                names.append(part)
        elif part:
            choices = ", ".join([*SIM_POLICY_NAMES, "all"])
            raise click.BadParameter(
                f"unknown policy {part!r} (one of {choices})", param_hint="--policy"
            )
    if not names:
        raise click.BadParameter("no policy given", param_hint="--policy")
    return names


def _is_fgd_variant(name: str) -> bool:
    """fgd with options not listed in SIM_POLICY_NAMES (fgd+mem+all, ...: see policies.py)."""
    try:
        make_scorer(name, RequestMix())
    except ValueError:
        return False
    return name.startswith("fgd")


def _traces(values: tuple[str, ...]) -> list[tuple[str, Path]]:
    names: list[str] = []
    for value in values or ("default",):
        names.extend(available_traces() if value == "all" else [value])
    traces: list[tuple[str, Path]] = []
    for name in names:
        try:
            path = resolve_pods(name)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--trace") from exc
        label = trace_name(path)
        if (label, path) not in traces:
            traces.append((label, path))
    return traces


@click.command("sim")
@click.option(
    "--trace",
    "traces",
    multiple=True,
    metavar="NAME|PATH|all",
    help="A published pod list by name (default, gpushare40, cpu100, ...), a CSV path, or "
    "all (every published trace on disk). Repeatable. [default: default]",
)
@click.option(
    "--nodes",
    "nodes_path",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="Node list (sn,cpu_milli,...) [default: the paper's 1,213 GPU nodes].",
)
@click.option(
    "--policy",
    default=DEFAULT_PACKING_POLICY,
    show_default=True,
    help="Packing policy, a comma-separated list, or all (the paper's six and ours: "
    + ", ".join(ALL_POLICIES)
    + ").",
)
@click.option("--seeds", default="42-51", show_default=True, help="e.g. 42-51 or 42,43.")
@click.option(
    "--baseline-seeds",
    default=None,
    help="Fewer seeds for the paper's six policies as reproduced here (random, dotprod, "
    "clustering, packing, bestfit, fgd), to save time [default: --seeds].",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes for the runs.",
)
@click.option(
    "--mix",
    default=None,
    metavar="VARIANT",
    help="APPROXIMATION: derive a mix by resampling the pod list (gpushareNN, multigpuNN, "
    "gpuspecNN, cpuNNN) instead of the published variant; compared with nothing published.",
)
@click.option(
    "--tune",
    type=float,
    default=1.3,
    show_default=True,
    help="Inflate the workload to this multiple of GPU capacity.",
)
@click.option(
    "--cache",
    "cache_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Keep each finished run here and reuse kept ones (build a long table in parts; "
    "empty it after changing a policy).",
)
@click.option(
    "--markdown",
    is_flag=True,
    help="Print the traces x policies table at 100 % arrival as Markdown (the README's).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a PNG of our curves against the published ones (one trace).",
)
@click.pass_obj
def sim(
    state: CliContext,
    traces: tuple[str, ...],
    nodes_path: Path | None,
    policy: str,
    seeds: str,
    baseline_seeds: str | None,
    jobs: int,
    mix: str | None,
    tune: float,
    cache_dir: Path | None,
    markdown: bool,
    plot_path: Path | None,
) -> None:
    """Replay traces (the FGD paper's protocol) and report unallocated GPU %."""  # fmt: skip
    try:
        seed_list = parse_seeds(seeds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--seeds") from exc
    try:
        baseline_list = seed_list if baseline_seeds is None else parse_seeds(baseline_seeds)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--baseline-seeds") from exc
    policies = _policies(policy)
    trace_list = _traces(traces)
    nodes_file = nodes_path or default_nodes()
    if mix is not None:
        if len(trace_list) != 1:
            raise click.BadParameter("--mix derives from one trace", param_hint="--mix")
        if VARIANT.match(mix) is None:
            raise click.BadParameter(
                f"unknown mix {mix!r}: use gpushareNN, multigpuNN, gpuspecNN or cpuNNN",
                param_hint="--mix",
            )
        trace_list = [(f"~{mix} (resampled approximation)", trace_list[0][1])]
    if plot_path is not None and len(trace_list) > 1:
        raise click.BadParameter("--plot draws one trace", param_hint="--plot")
    # Tables and progress go to stderr under -o json, so stdout stays machine-readable.
    console = Console(stderr=state.json)
    work = [
        Job(name, nodes_file, path, name_of_policy, seed, tune, mix)
        for name, path in trace_list
        for name_of_policy in policies
        for seed in (baseline_list if name_of_policy in BASELINES else seed_list)
    ]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:  # fmt: skip
        task = progress.add_task("simulated seeds", total=len(work))

        def done(job: Job, result: SeedResult) -> None:
            progress.update(task, advance=1, description=f"{job.trace} {job.policy} {job.seed}")

        results = run_jobs(work, jobs, done, cache_dir)
    if len(trace_list) == 1 and not markdown:
        name, _ = trace_list[0]
        runs = {p: results[name, p] for p in policies}
        published = {} if mix is not None else published_curves(published_csv(), name)
        console.print(_table(runs, published, name))
        if plot_path is not None:
            from scheduler.sim.plot import plot_curves  # matplotlib is slow to import: only here

            ours = {p: curve(r) for p, r in runs.items()}
            plot_curves(ours, published, plot_path, f"{name}, seeds {seeds}, tune {tune}")
            console.print(f"plot: {plot_path}")
    else:
        names = [name for name, _ in trace_list]
        rows = matrix_rows(results, names, policies)
        if markdown:
            # Plain text: a console would wrap the long rows.
            click.echo(markdown_matrix(rows, policies, seed_list), err=state.json)
        else:
            console.print(_matrix_table(rows, policies))
    if state.json:
        for (name, policy_name), seed_runs in results.items():
            click.echo(json.dumps({"trace": name, **summary(policy_name, seed_runs)}))


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
    cpu = [f"{summary(n, r)['cpu_seconds_per_seed']} s" for n, r in results.items()]
    table.add_row("CPU s/seed", *cpu)
    return table


def _matrix_table(rows: list[dict[str, object]], policies: list[str]) -> Table:
    table = Table(title="Unallocated GPU % at 100 % arrival (paper in brackets)")
    table.add_column("trace")
    for name in policies:
        table.add_column(name + (" (paper)" if name in PUBLISHED_POLICY else ""), justify="right")
    for row in rows:
        table.add_row(str(row["trace"]), *(str(row[p]) for p in policies))
    return table
