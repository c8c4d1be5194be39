"""Where the published openb traces are: the shared data folder, else the copies shipped here.

A trace is named by its variant ("default", "gpushare40", "cpu100", ...), by its file
stem ("openb_pod_list_gpushare40") or by a path to a pod list. Names are looked up
in the shared data folder (GPUPOOL_TRACE_DIR, else <repo>/../shared/data/
alibaba-gpu-v2023), then in scheduler/sim/data/, which holds the GPU node list,
the default pod list and the published 10-seed figures (see data/SOURCE.md), so
`gpupool sim` works in a fresh clone.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

BUNDLED_DIR = Path(__file__).resolve().parent / "data"
POD_PREFIX = "openb_pod_list_"
NODE_LIST = "openb_node_list_gpu_node.csv"
PUBLISHED_TABLE = BUNDLED_DIR / "published_unallocated.csv"
# The paper's six policies, in its order, by their names in the authors' result files.
PAPER_POLICIES = (
    "01-Random",
    "02-DotProd",
    "03-GpuClustering",
    "04-GpuPacking",
    "05-BestFit",
    "06-FGD",
)


def shared_dir() -> Path:
    default = Path(__file__).resolve().parents[3] / "shared/data/alibaba-gpu-v2023"
    return Path(os.environ.get("GPUPOOL_TRACE_DIR", default))


def search_dirs() -> tuple[Path, ...]:
    return (shared_dir(), BUNDLED_DIR)


def trace_name(path: Path) -> str:
    """The variant name of a pod list ("default" for openb_pod_list_default.csv)."""
    stem = path.stem
    return stem[len(POD_PREFIX) :] if stem.startswith(POD_PREFIX) else stem


def resolve_pods(trace: str) -> Path:
    """The pod list for a name or a path; ValueError naming where it looked."""
    as_path = Path(trace)
    if as_path.suffix == ".csv" or os.sep in trace:
        if as_path.is_file():
            return as_path
        raise ValueError(f"no pod list at {trace}")
    name = trace[len(POD_PREFIX) :] if trace.startswith(POD_PREFIX) else trace
    for folder in search_dirs():
        candidate = folder / f"{POD_PREFIX}{name}.csv"
        if candidate.is_file():
            return candidate
    known = ", ".join(available_traces()) or "none"
    raise ValueError(f"unknown trace {trace!r} (known here: {known}; or give a path to a CSV)")


def default_nodes() -> Path:
    """The GPU node list of the paper (1,213 nodes, 6,212 GPUs)."""
    for folder in search_dirs():
        if (folder / NODE_LIST).is_file():
            return folder / NODE_LIST
    return BUNDLED_DIR / NODE_LIST


def available_traces() -> list[str]:
    """Every published trace on disk here: default first, then by name."""
    names = {
        trace_name(path)
        for folder in search_dirs()
        if folder.is_dir()
        for path in folder.glob(f"{POD_PREFIX}*.csv")
    }
    return sorted(names, key=lambda n: (n != "default", n))


@dataclass(frozen=True)
class Published:
    seeds: int
    at_100: float  # mean unallocated GPU % at 100 % arrival
    at_130: float


def published_figures(path: Path = PUBLISHED_TABLE) -> dict[tuple[str, str], Published]:
    """(trace, paper policy) -> the authors' 10-seed means (see data/SOURCE.md)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {
            (row["trace"], row["policy"]): Published(
                int(row["seeds"]),
                float(row["unallocated_pct_at_100"]),
                float(row["unallocated_pct_at_130"]),
            )
            for row in csv.DictReader(handle)
        }
