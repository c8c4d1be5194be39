"""GPU check of the worker launcher: run by check_workers_gpu.sh on a host
with one NVIDIA GPU (not collected by pytest).

A. The TP MLP (tests/e2e/workers/tp_mlp.py) on CUDA, without gpupool:
   A1 NCCL, TP=1 on cuda:0 — NCCL refuses two ranks on one GPU, so with one
      GPU the NCCL group has one rank; it still initialises NCCL and runs its
      all_reduce on device memory.
   A2 gloo, TP=2: rank 0 computes on cuda:0 (staging its partial through host
      memory for the all_reduce), rank 1 on the CPU.
   Both must equal the single-process CPU result.
B. Through a real scheduler and a real agent (`gpupool agent run`, real NVML):
   B1 a whole-GPU allocation launching the TP MLP with NCCL on its GPU;
   B2 two fractional allocations side by side whose workers cap torch at the
      claimed memory: one allocates within its cap (must succeed), one beyond
      it (must be refused by the allocator).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "proto"))
TP_MLP = ROOT / "tests" / "e2e" / "workers" / "tp_mlp.py"
MEM_PROBE = ROOT / "tests" / "gpu" / "mem_probe.py"
STEPS = 8
RESULTS: list[tuple[str, bool, str]] = []


def check(name: str, fn: Callable[[], str]) -> None:
    started = time.monotonic()
    try:
        detail = fn()
        ok = True
    except Exception as exc:  # report and go on with the other checks
        ok, detail = False, f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    detail += f" [{time.monotonic() - started:.1f}s]"
    RESULTS.append((name, ok, detail))
    print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reference() -> list[list[float]]:
    out = subprocess.run(
        [sys.executable, str(TP_MLP), "--single", "--steps", str(STEPS)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(json.loads(out)["x"])


def max_diff(got: list[list[float]], want: list[list[float]]) -> float:
    return max(
        abs(a - b) for ra, rb in zip(got, want, strict=True) for a, b in zip(ra, rb, strict=True)
    )


def direct(world: int, backend: str, devices: list[str], work: Path) -> str:
    port = free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(world),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "GPUPOOL_TP_SIZE": str(world),
            "GPUPOOL_PP_SIZE": "1",
        }
        command = [sys.executable, str(TP_MLP), "--steps", str(STEPS), "--backend", backend]
        command += ["--device", devices[rank], "--out", str(work / "out")]
        procs.append(subprocess.Popen(command, env=env))
    codes = [p.wait(timeout=120) for p in procs]
    if any(codes):
        raise RuntimeError(f"ranks exited {codes}")
    got = json.loads((work / "out" / "result.json").read_text())["x"]
    diff = max_diff(got, reference())
    if diff > 1e-9:
        raise RuntimeError(f"differs from the single-process result by {diff}")
    return f"{world} rank(s) {backend} on {devices}: equals the CPU result (max diff {diff:.1e})"


def through_gpupool(work: Path) -> None:
    import grpc  # noqa: F401  (fails early, clearly, without the repository's deps)

    from gpupool.v1 import admin_pb2, scheduler_pb2, types_pb2
    from scheduler.app import SchedulerApp, SchedulerSettings
    from scheduler.security.bootstrap import issue_agent_credentials
    from scheduler.security.client_config import ClientConfig
    from tests.e2e.conftest import WORKER_TEMPLATES, agent_env
    from tests.integration.conftest import Client

    settings = SchedulerSettings(
        database_url=os.environ.get("GPUPOOL_TEST_DATABASE_URL"),
        data_dir=work / "scheduler",
        listen=f"127.0.0.1:{free_port()}",
        agent_listen=f"127.0.0.1:{free_port()}",
        heartbeat_interval_s=0.5,
        worker_templates_file=WORKER_TEMPLATES,
    )
    app = SchedulerApp(settings)
    app.start()  # secure by default: a local CA in data_dir, an admin config beside it
    assert app.admin_config is not None
    ca, cert, key = issue_agent_credentials(settings.data_dir, "gpu-check")
    agent_log = (work / "agent.log").open("ab")
    agent = subprocess.Popen(
        [sys.executable, "-m", "scheduler.cli.main", "agent", "run",
         "--scheduler", app.agent_address,
         "--ca-cert", str(ca), "--cert", str(cert), "--key", str(key),
         "--node-name", "gpu-check", "--state-dir", str(work / "agent"),
         "--worker-templates", str(WORKER_TEMPLATES)],
        stdout=agent_log, stderr=subprocess.STDOUT, cwd=ROOT, env=agent_env(),
    )  # fmt: skip
    client = Client(app.address, ClientConfig.read(app.admin_config).credentials())
    try:
        wait(lambda: "gpu-check" in app.agents.connected_nodes(), 60, "the agent to connect")
        gpu = client.admin.ListGpus(admin_pb2.ListGpusRequest(node="gpu-check")).gpus[0]
        print(f"agent sees {gpu.model} with {gpu.memory_mib} MiB", flush=True)

        def allocate(request_id: str, script: Path, args: str, **resources: object) -> str:
            worker = types_pb2.WorkerSpec(
                template="python", args={"script": str(script), "script_args": args}
            )
            request = scheduler_pb2.AllocateRequest(
                tenant="gpu-check", request_id=request_id, worker=worker,
                on_failure=types_pb2.FAILURE_POLICY_FAIL, **resources,  # type: ignore[arg-type]
            )  # fmt: skip
            return str(client.scheduler.Allocate(request).allocation.id)

        def finished(allocation_id: str) -> types_pb2.Allocation:
            terminal = (types_pb2.ALLOCATION_STATE_RELEASED, types_pb2.ALLOCATION_STATE_FAILED)
            get = scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id)
            wait(lambda: client.scheduler.GetAllocation(get).allocation.state in terminal, 150,
                 f"{allocation_id} to finish")  # fmt: skip
            return client.scheduler.GetAllocation(get).allocation

        def logs(allocation_id: str) -> str:
            request = admin_pb2.WorkerLogsRequest(allocation_id=allocation_id, rank=0)
            return b"".join(c.data for c in client.admin.WorkerLogs(request, timeout=30)).decode()

        def whole_nccl() -> str:
            out = work / "b1"
            args = f"--steps {STEPS} --backend nccl --device cuda --out {out}"
            allocation = finished(allocate("b1", TP_MLP, args, whole=types_pb2.WholeGpus(count=1)))
            if allocation.state != types_pb2.ALLOCATION_STATE_RELEASED:
                raise RuntimeError(f"{allocation.message}\n{logs(allocation.id)}")
            diff = max_diff(json.loads((out / "result.json").read_text())["x"], reference())
            if diff > 1e-9:
                raise RuntimeError(f"differs from the CPU result by {diff}")
            return f"launched by the agent on {gpu.uuid}; equals the CPU result"

        def fraction_cap() -> str:
            claim = min(8192, gpu.memory_mib // 4)
            fraction = types_pb2.FractionalGpu(milli_gpu=250, memory_mib=claim)
            within = allocate("b2-within", MEM_PROBE, f"--mib {claim // 2} --expect ok",
                              fraction=fraction)  # fmt: skip
            beyond = allocate("b2-beyond", MEM_PROBE, f"--mib {claim * 3 // 2} --expect oom",
                              fraction=fraction)  # fmt: skip
            lines = []
            for allocation_id, what in ((within, "within"), (beyond, "beyond")):
                allocation = finished(allocation_id)
                text = logs(allocation_id)
                if allocation.state != types_pb2.ALLOCATION_STATE_RELEASED:
                    raise RuntimeError(f"{what}: {allocation.message}\n{text}")
                lines.append(next(s for s in text.splitlines() if s.startswith("outcome")))
            return f"claim {claim} MiB: within → {lines[0]}; beyond → {lines[1]}"

        check("B1 whole GPU via agent, NCCL", whole_nccl)
        check("B2 fractional memory cap via agent", fraction_cap)
    finally:
        client.close()
        agent.terminate()
        agent.wait(timeout=20)
        app.stop(grace=1)


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise TimeoutError(f"no {what} within {timeout:.0f}s")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="gpupool-gpu-check-"))
    print(f"work dir {work}", flush=True)
    check("A1 TP=1 NCCL on cuda:0", lambda: direct(1, "nccl", ["cuda"], work / "a1"))
    check(
        "A2 TP=2 gloo, rank 0 on cuda:0, rank 1 on CPU",
        lambda: direct(2, "gloo", ["cuda", "cpu"], work / "a2"),
    )
    try:
        through_gpupool(work)
    except Exception as exc:
        traceback.print_exc()
        RESULTS.append(("B scheduler + agent", False, f"{type(exc).__name__}: {exc}"))
    print("\n==== summary ====")
    for name, ok, detail in RESULTS:
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")
    failed = sum(1 for _, ok, _ in RESULTS if not ok)
    print(f"{len(RESULTS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
