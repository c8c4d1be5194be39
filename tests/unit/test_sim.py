"""The trace simulator: parsing both pod formats, seeded inflation, known runs, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from scheduler.cli.main import cli
from scheduler.domain.requests import FractionDemand, WholeDemand
from scheduler.sim.batch import Job, run_jobs
from scheduler.sim.inflate import inflate
from scheduler.sim.report import markdown_matrix, matrix_rows, parse_seeds
from scheduler.sim.run import SeedResult, simulate
from scheduler.sim.trace import TraceNode, TracePod, build_fleet, read_nodes, read_pods
from scheduler.sim.traces import (
    BUNDLED_DIR,
    available_traces,
    default_nodes,
    published_figures,
    resolve_pods,
    trace_name,
)
from scheduler.sim.variants import derive

NODES_CSV = "sn,cpu_milli,memory_mib,gpu,model\nn0,4000,8192,1,T4\nn1,4000,8192,1,T4\n"
# One pod asks for more CPU than any node has: it fails whatever the order.
PODS_CSV = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time\n"
    "too-big,5000,1024,1,1000,,LS,Running,0,10,0\n"
    "fits,1000,1024,1,1000,T4,BE,Running,0,10,0\n"
)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_both_pod_formats_and_node_lists(tmp_path: Path) -> None:
    full = read_pods(write(tmp_path, "full.csv", PODS_CSV))
    assert full[1] == TracePod("fits", 1000, 1024, 1, 1000, frozenset({"T4"}))
    five_columns = (
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli\np,8000,4096,1,460\nq,2000,512,0,0\n"
    )
    short = read_pods(write(tmp_path, "short.csv", five_columns))
    assert short == [TracePod("p", 8000, 4096, 1, 460), TracePod("q", 2000, 512, 0, 0)]
    assert short[0].request().demand == FractionDemand(460, 0)
    assert short[1].request().host_only
    assert TracePod("m", 1, 1, 4, 1000).request().demand == WholeDemand(4)
    nodes = read_nodes(write(tmp_path, "nodes.csv", NODES_CSV))
    assert nodes[0] == TraceNode("n0", 4000, 8192, 1, "T4")
    snapshot = build_fleet(nodes)
    assert snapshot.structure.models == {"T4"}  # not a catalogue name, and that is fine
    assert snapshot.nodes["n1"].cpu_milli == 4000


def test_inflation_reaches_the_target_deterministically_per_seed() -> None:
    pods = [TracePod(f"p{i}", 1000, 1, 1, (i % 9 + 1) * 100) for i in range(50)]
    capacity = 20_000  # the 50 pods ask 24,000: inflation draws up to 26,000
    first = inflate(pods, capacity, seed=42)
    assert first == inflate(pods, capacity, seed=42)
    assert [p.name for p in first] != [p.name for p in inflate(pods, capacity, seed=43)]
    total = sum(p.gpu_request for p in first)
    assert 1.3 * capacity - 1000 < total <= 1.3 * capacity
    assert sorted(p.name for p in first[:50]) == sorted(p.name for p in pods)  # originals first
    shrunk = inflate(pods, capacity_milli=1000, seed=1)
    assert sum(p.gpu_request for p in shrunk) <= 1300 < sum(p.gpu_request for p in pods)


def test_simulator_gives_known_allocation_on_a_tiny_trace(tmp_path: Path) -> None:
    nodes = read_nodes(write(tmp_path, "nodes.csv", NODES_CSV))
    pods = read_pods(write(tmp_path, "pods.csv", PODS_CSV))
    for policy in ("fgd", "bestfit", "random", "default"):
        result = simulate(nodes, pods, policy, seed=7, tune=1.0)
        assert (result.placed, result.failed) == (1, 1)
        assert result.unallocated(100) == 50.0
        assert result.unallocated(130) == 50.0


def test_derived_mixes_hit_their_shares() -> None:
    pods = [TracePod(f"s{i}", 1000, 1, 1, 500) for i in range(40)]
    pods += [TracePod(f"w{i}", 1000, 1, 1, 1000) for i in range(40)]
    pods += [TracePod(f"c{i}", 1000, 1, 0, 0) for i in range(20)]
    nodes = [TraceNode("n", 8000, 1, 8, "T4")]
    shared = derive(pods, "gpushare80", nodes)
    share = sum(p.gpu_request for p in shared if p.sharing) / sum(p.gpu_request for p in shared)
    assert 0.75 < share < 0.85
    cpu = derive(pods, "cpu250", nodes)
    assert sum(1 for p in cpu if not p.gpu_request) / len(cpu) == pytest.approx(0.25, abs=0.01)
    spec = derive(pods, "gpuspec20", nodes)
    assert sum(1 for p in spec if p.gpu_spec) == 16  # 20 % of the 80 GPU pods


def test_parse_seeds() -> None:
    assert parse_seeds("42-44,50") == [42, 43, 44, 50]


def test_cli_prints_a_json_summary_last(tmp_path: Path) -> None:
    nodes = write(tmp_path, "nodes.csv", NODES_CSV)
    pods = write(tmp_path, "pods.csv", PODS_CSV)
    result = CliRunner().invoke(
        cli,
        ["-o", "json", "sim", "--nodes", str(nodes), "--trace", str(pods), "--policy", "fgd",
         "--seeds", "1-2", "--tune", "1.0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["policy"] == "fgd"
    assert summary["trace"] == "pods"
    assert summary["seeds"] == [1, 2]
    assert summary["unallocated_pct_at_100"] == 50.0
    assert summary["unallocated_pct_at_130"] == 50.0
    assert summary["seconds_per_seed"] >= 0


def test_traces_resolve_by_name_in_the_shared_folder_then_the_shipped_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUPOOL_TRACE_DIR", str(tmp_path))
    # Nothing shared: the default list and node list come with the repository.
    assert resolve_pods("default") == BUNDLED_DIR / "openb_pod_list_default.csv"
    assert default_nodes() == BUNDLED_DIR / "openb_node_list_gpu_node.csv"
    assert available_traces() == ["default"]
    with pytest.raises(ValueError, match="unknown trace 'gpushare40'"):
        resolve_pods("gpushare40")
    shared = write(tmp_path, "openb_pod_list_gpushare40.csv", PODS_CSV)
    assert resolve_pods("gpushare40") == shared
    assert resolve_pods("openb_pod_list_gpushare40") == shared
    assert resolve_pods(str(shared)) == shared
    assert available_traces() == ["default", "gpushare40"]
    assert trace_name(shared) == "gpushare40"


def test_the_shipped_published_figures_match_the_paper() -> None:
    figures = published_figures()
    assert figures["default", "06-FGD"].at_100 == pytest.approx(4.77, abs=0.005)
    assert figures["gpushare60", "06-FGD"].at_100 == pytest.approx(8.745, abs=0.001)
    assert figures["cpu200", "03-GpuClustering"].at_100 == pytest.approx(10.33, abs=0.005)
    assert {seeds for seeds in (f.seeds for f in figures.values())} == {10}


def test_the_matrix_puts_ours_against_the_published_fgd() -> None:
    runs = {
        ("default", "fgd"): [SeedResult("fgd", 1, (None,) * 100 + (95.0,) * 31, 1, 0, 0.1)],
        ("default", "ours"): [SeedResult("ours", 1, (None,) * 100 + (95.5,) * 31, 1, 0, 0.1)],
    }
    rows = matrix_rows(runs, ["default"], ["fgd", "ours"])
    assert rows[0]["fgd"] == "5.00 [4.77]"
    assert rows[0]["ours"] == "4.50"
    assert rows[0]["paper_fgd"] == "4.77"
    assert rows[0]["gap"] == "-0.27"
    table = markdown_matrix(rows, ["fgd", "ours"], [1])
    assert "| default | 5.00 [4.77] | 4.50 | 4.77 | **-0.27** |" in table


def test_cli_runs_every_trace_on_disk_into_one_markdown_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUPOOL_TRACE_DIR", str(tmp_path))
    nodes = write(tmp_path, "nodes.csv", NODES_CSV)
    write(tmp_path, "openb_pod_list_cpu050.csv", PODS_CSV)
    result = CliRunner().invoke(
        cli,
        ["sim", "--nodes", str(nodes), "--trace", "all", "--policy", "fgd,clustering",
         "--seeds", "1-2", "--baseline-seeds", "1", "--tune", "1.0", "--markdown"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "| trace | fgd | clustering | paper FGD | clustering - paper FGD |" in lines
    # The shipped default trace, then the shared one; the paper's policies ran one seed only.
    rows = [line for line in lines if line.startswith(("| default", "| cpu050"))]
    assert [row.split(" | ")[0] for row in rows] == ["| default", "| cpu050"]
    assert "50.00 [5.00] (1) | 50.00 [6.48] (1) | 5.00 | **+45.00** |" in rows[1]


def test_a_cache_keeps_finished_runs_for_the_next_command(tmp_path: Path) -> None:
    nodes = read_nodes(write(tmp_path, "nodes.csv", NODES_CSV))
    pods_path = write(tmp_path, "pods.csv", PODS_CSV)
    job = Job("pods", tmp_path / "nodes.csv", pods_path, "fgd", 3, 1.0)
    cache = tmp_path / "cache"
    first = run_jobs([job], cache=cache)
    assert len(list(cache.iterdir())) == 1
    seen: list[SeedResult] = []
    again = run_jobs([job], done=lambda _, result: seen.append(result), cache=cache)
    assert again == first and seen == first["pods", "fgd"]
    assert simulate(nodes, read_pods(pods_path), "fgd", 3, 1.0).allocation == seen[0].allocation
