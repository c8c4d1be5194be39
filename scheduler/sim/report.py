"""Summaries of simulated runs, and the published curves they are compared with."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path

from scheduler.sim.run import LEVELS, SeedResult
from scheduler.sim.traces import Published, published_figures

# Our policy name -> the paper's (analysis_allo_discrete.csv `sc_policy`).
PUBLISHED_POLICY = {
    "random": "01-Random",
    "dotprod": "02-DotProd",
    "clustering": "03-GpuClustering",
    "packing": "04-GpuPacking",
    "bestfit": "05-BestFit",
    "fgd": "06-FGD",
}
TABLE_LEVELS = (80, 85, 90, 92, 94, 95, 96, 98, 100, 110, 120, 130)


def parse_seeds(text: str) -> list[int]:
    """ "42-51" or "42,45,50" (or a mix) -> the seeds, in order."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            low, high = part.split("-", 1)
            seeds.extend(range(int(low), int(high) + 1))
        else:
            seeds.append(int(part))
    if not seeds:
        raise ValueError(f"no seeds in {text!r}")
    return seeds


def mean_unallocated(results: Sequence[SeedResult], level: int) -> float | None:
    values = [v for r in results if (v := r.unallocated(level)) is not None]
    return statistics.fmean(values) if values else None


def curve(results: Sequence[SeedResult]) -> list[float | None]:
    """Mean unallocated GPU % at each arrived level 0..130."""
    return [mean_unallocated(results, k) for k in range(LEVELS)]


def summary(policy: str, results: Sequence[SeedResult]) -> dict[str, object]:
    """The machine-readable line for one policy."""
    at100 = mean_unallocated(results, 100)
    at130 = mean_unallocated(results, 130)
    seconds = statistics.fmean(r.seconds for r in results)
    return {
        "policy": policy,
        "seeds": [r.seed for r in results],
        "unallocated_pct_at_100": None if at100 is None else round(at100, 2),
        "unallocated_pct_at_130": None if at130 is None else round(at130, 2),
        "seconds_per_seed": round(seconds, 2),
        "cpu_seconds_per_seed": round(statistics.fmean(r.cpu_seconds for r in results), 2),
    }


def published_curves(path: Path, workload: str) -> dict[str, list[float]]:
    """Mean unallocated GPU % per level for each of the paper's policies on `workload`
    (e.g. "openb_pod_list_default"), from the authors' analysis_allo_discrete.csv."""
    if not path.exists():
        return {}
    sums: dict[str, list[float]] = {}
    runs: dict[str, int] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["workload"] != workload:
                continue
            policy = row["sc_policy"]
            values = sums.setdefault(policy, [0.0] * LEVELS)
            for k in range(LEVELS):
                values[k] += 100.0 - float(row[str(k)])
            runs[policy] = runs.get(policy, 0) + 1
    return {p: [v / runs[p] for v in values] for p, values in sums.items()}


def published_for(policy: str, published: dict[str, list[float]]) -> list[float] | None:
    """The published curve to compare a policy with (FGD variants compare with FGD)."""
    name = PUBLISHED_POLICY.get(policy.split("+", 1)[0])
    return published.get(name) if name else None


def matrix_rows(
    results: Mapping[tuple[str, str], Sequence[SeedResult]],
    traces: Sequence[str],
    policies: Sequence[str],
    published: Mapping[tuple[str, str], Published] | None = None,
) -> list[dict[str, object]]:
    """One row per trace: each policy's mean at 100 % arrival, "ours [paper]" for the
    paper's policies, and the gap of the last policy to the published FGD."""
    figures = published_figures() if published is None else published
    rows: list[dict[str, object]] = []
    for trace in traces:
        row: dict[str, object] = {"trace": trace}
        for policy in policies:
            runs = results.get((trace, policy), ())
            ours = mean_unallocated(runs, 100)
            text = "-" if ours is None else f"{ours:.2f}"
            paper = figures.get((trace, PUBLISHED_POLICY.get(policy, "")))
            row[policy] = text if paper is None else f"{text} [{paper.at_100:.2f}]"
            row[f"{policy}:seeds"] = len(runs)
            row[f"{policy}:cpu"] = statistics.fmean(r.cpu_seconds for r in runs) if runs else 0.0
        fgd = figures.get((trace, PUBLISHED_POLICY["fgd"]))
        last = mean_unallocated(results.get((trace, policies[-1]), ()), 100)
        row["paper_fgd"] = "-" if fgd is None else f"{fgd.at_100:.2f}"
        row["gap"] = "-" if fgd is None or last is None else f"{last - fgd.at_100:+.2f}"
        rows.append(row)
    return rows


def markdown_matrix(
    rows: Sequence[Mapping[str, object]], policies: Sequence[str], seeds: Sequence[int]
) -> str:
    """The README's table: traces x policies, the last policy against the published FGD."""
    last = policies[-1]
    head = ["trace", *policies, "paper FGD", f"{last} - paper FGD"]
    lines = [
        f"Unallocated GPU % at 100 % arrival, mean of seeds {seeds[0]}-{seeds[-1]} "
        f"({len(seeds)} seeds; a cell marked (n) is a mean of n seeds only); "
        "the paper's 10-seed mean in brackets.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for row in rows:
        cells = [str(row["trace"])]
        for policy in policies:
            count = row.get(f"{policy}:seeds", len(seeds))
            mark = "" if count == len(seeds) else f" ({count})"
            cells.append(f"{row[policy]}{mark}")
        cells += [str(row["paper_fgd"]), f"**{row['gap']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    cpu = [statistics.fmean(_number(row.get(f"{p}:cpu")) for row in rows) for p in policies]
    lines.append("| CPU s/seed (mean) | " + " | ".join(f"{c:.1f}" for c in cpu) + " | | |")
    return "\n".join(lines)


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else 0.0
