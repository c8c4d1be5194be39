"""What the gateway costs: N streaming clients through one `gpupool gateway` process
to simulated engines, against the same clients straight to the same engines in
the same run; and the routing decision's own cost with 64 replicas.

    python -m bench.gateway_overhead [--clients 64] [--duration 10] [--engines 4]
        [--max-tokens 8] [--client-procs 2] [--insecure] [--database-url URL]

1. `route_decision_p99_us`: the default policy's Router.route (+ finish) over 64
   replicas of mixed hardware with load booked and prefixes indexed, in this
   process, timed per call.
2. Engines: `gpupool engine simulate --speedup 1000` processes (the real
   simulated engine), one gateway process in front of them (HTTPS from a
   throwaway local CA unless --insecure, tokens in a scratch database
   gpupool_bench_<random> that is dropped afterwards).
3. The same client processes run `direct` (round robin over the engines) then
   `gateway`; each client streams /v1/completions back to back for --duration
   seconds. Time to first byte (the first SSE chunk) per request.

JSON (last line): requests_per_s (through the gateway), direct_requests_per_s,
added_latency_p50_ms / added_latency_p99_ms (gateway TTFB percentile minus
direct's), route_decision_p99_us, and the inputs. Targets: >= 1,000 requests/s,
added p99 < 5 ms, decision p99 < 200 µs. Everything talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
import yaml
from sqlalchemy import create_engine

from bench.harness import DEFAULT_URL, loopback_server, scratch_database
from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.clock import SystemClock
from scheduler.routing.router import Router, speed_of
from scheduler.services.tokens import TokenService
from scheduler.serving.kv_cache import block_hashes
from scheduler.serving.performance import engine_performance
from scheduler.store.database import migrate

MODEL = "llama-3.1-8b"
DECISION_REPLICAS = 64
DECISIONS = 20_000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 1. the decision alone ----------------------------------------------------------
def decision_cost_us(
    replicas: int = DECISION_REPLICAS, decisions: int = DECISIONS
) -> tuple[float, float]:
    """(p50, p99) of one Router.route call in µs."""
    rng = random.Random(7)
    router = Router("weighted", block_tokens=16)
    gpus = ["B200", "H100-80GB", "A100-80GB"]
    for i in range(replicas):
        perf = engine_performance(gpus[i % 3], MODEL)
        router.upsert_replica(f"r{i}", state="ready", speed=speed_of(perf))
    prompts = [("system prompt " * 40) + f"user {u} " * rng.randint(5, 400) for u in range(200)]
    chains = [block_hashes(p, 16, 1024) for p in prompts]
    live = []
    timings: list[float] = []
    for n in range(decisions):
        k = rng.randrange(len(prompts))
        request = router.request(len(prompts[k]) // 4, max_tokens=256, blocks=chains[k])
        start = time.perf_counter_ns()
        _, ticket = router.route(request)
        timings.append((time.perf_counter_ns() - start) / 1000)
        assert ticket is not None
        live.append(ticket)
        if len(live) > 4 * replicas:  # keep a realistic amount in flight
            done = live.pop(rng.randrange(len(live)))
            router.finish(done, 200)
        if n % 5000 == 0:
            log(f"decisions: {n}/{decisions}")
    return quantile(timings, 0.5), quantile(timings, 0.99)


# -- 2. processes ----------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gpupool(*args: str) -> list[str]:
    return [sys.executable, "-m", "scheduler.cli.main", *args]


async def wait_healthy(
    url: str, context: ssl.SSLContext | None = None, timeout: float = 180
) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or False)) as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(url + "/health") as answer:
                    if answer.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not become healthy")


# -- 3. clients ---------------------------------------------------------------------------
async def _client_loop(
    session: aiohttp.ClientSession,
    urls: list[str],
    headers: dict[str, str],
    body: bytes,
    until: float,
    ttfb_ms: list[float],
    errors: list[int],
) -> None:
    i = random.randrange(len(urls))
    while time.monotonic() < until:
        url = urls[i % len(urls)]
        i += 1
        start = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as answer:
                first = True
                async for _ in answer.content.iter_any():
                    if first:
                        ttfb_ms.append((time.perf_counter() - start) * 1000)
                        first = False
                if answer.status != 200:
                    errors.append(answer.status)
        except aiohttp.ClientError:
            errors.append(0)


async def _clients(spec: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=spec["ca"]) if spec["ca"] else False
    connector = aiohttp.TCPConnector(limit=0, ssl=context)
    body = json.dumps(spec["body"]).encode()
    headers = {"Content-Type": "application/json", **spec["headers"]}
    ttfb: list[float] = []
    errors: list[int] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the connections, then measure.
        warm = time.monotonic() + 1.0
        await asyncio.gather(
            *(
                _client_loop(session, spec["urls"], headers, body, warm, [], [])
                for _ in range(spec["clients"])
            )
        )
        start = time.monotonic()
        until = start + spec["duration"]
        await asyncio.gather(
            *(
                _client_loop(session, spec["urls"], headers, body, until, ttfb, errors)
                for _ in range(spec["clients"])
            )
        )
        elapsed = time.monotonic() - start
    return {"ttfb_ms": ttfb, "errors": len(errors), "elapsed": elapsed}


def _client_process(spec: dict[str, Any]) -> dict[str, Any]:
    return uvloop.run(_clients(spec))


def run_phase(name: str, procs: int, spec: dict[str, Any]) -> dict[str, Any]:
    per_proc = {**spec, "clients": max(1, spec["clients"] // procs)}
    log(f"{name}: {per_proc['clients'] * procs} streaming clients for {spec['duration']} s …")
    with mp.get_context("spawn").Pool(procs) as pool:
        parts = pool.map(_client_process, [per_proc] * procs)
    ttfb = [v for p in parts for v in p["ttfb_ms"]]
    elapsed = max(p["elapsed"] for p in parts)
    result = {
        "requests": len(ttfb),
        "requests_per_s": len(ttfb) / elapsed,
        "ttfb_p50_ms": quantile(ttfb, 0.5),
        "ttfb_p99_ms": quantile(ttfb, 0.99),
        "errors": sum(p["errors"] for p in parts),
    }
    log(
        f"{name}: {result['requests_per_s']:.0f} requests/s, TTFB p50 "
        f"{result['ttfb_p50_ms']:.2f} ms p99 {result['ttfb_p99_ms']:.2f} ms, "
        f"{result['errors']} errors"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--insecure", action="store_true", help="Plain HTTP to the gateway.")
    parser.add_argument("--profile", metavar="FILE", help="py-spy record of the gateway (raw)")
    parser.add_argument(
        "--database-url", default=os.environ.get("GPUPOOL_DATABASE_URL") or DEFAULT_URL
    )
    args = parser.parse_args()

    log(f"route decisions over {DECISION_REPLICAS} replicas …")
    decision_p50, decision_p99 = decision_cost_us()
    log(f"route decision p50 {decision_p50:.1f} µs, p99 {decision_p99:.1f} µs")

    workdir = Path(tempfile.mkdtemp(prefix="gpupool-gw-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        with scratch_database(loopback_server(args.database_url)) as db_url:
            migrate(db_url)
            engine = create_engine(db_url)
            _, token = TokenService(engine, SystemClock()).create(
                SYSTEM, "gateway-bench", Role.SERVICE, "bench"
            )
            engine.dispose()
            ports = [free_port() for _ in range(args.engines)]
            gpu_models = ["H100-80GB", "B200", "A100-80GB", "H200"]
            for i, port in enumerate(ports):
                gpu = gpu_models[i % len(gpu_models)]
                processes.append(
                    subprocess.Popen(
                        gpupool(
                            "engine",
                            "simulate",
                            "--model",
                            MODEL,
                            "--gpu-model",
                            gpu,
                            "--port",
                            str(port),
                            "--speedup",
                            "1000",
                        ),
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            replicas = [
                {
                    "id": f"e{i}",
                    "deployment": "bench",
                    "tenant": "bench",
                    "model": MODEL,
                    "endpoint": f"127.0.0.1:{port}",
                    "gpu_model": gpu_models[i % len(gpu_models)],
                }
                for i, port in enumerate(ports)
            ]
            (workdir / "replicas.yaml").write_text(yaml.safe_dump({"replicas": replicas}))
            gw_port = free_port()
            tls = [] if not args.insecure else ["--insecure"]
            gateway_process = subprocess.Popen(
                gpupool(
                    "gateway",
                    "--listen",
                    f"127.0.0.1:{gw_port}",
                    "--database-url",
                    db_url,
                    "--replicas",
                    str(workdir / "replicas.yaml"),
                    "--data-dir",
                    str(workdir),
                    *tls,
                ),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            processes.append(gateway_process)
            for port in ports:
                asyncio.run(wait_healthy(f"http://127.0.0.1:{port}"))
            scheme = "http" if args.insecure else "https"
            ca = "" if args.insecure else str(workdir / "pki" / "ca.crt")
            for _ in range(100):  # the gateway writes its CA before it listens
                if args.insecure or Path(ca).exists():
                    break
                time.sleep(0.1)
            context = ssl.create_default_context(cafile=ca) if ca else None
            gateway_url = f"{scheme}://127.0.0.1:{gw_port}"
            asyncio.run(wait_healthy(gateway_url, context))
            body = {
                "model": MODEL,
                "prompt": "Say something. " * 20,
                "max_tokens": args.max_tokens,
                "stream": True,
            }
            base = {"clients": args.clients, "duration": args.duration, "body": body}
            direct = run_phase(
                "direct",
                args.client_procs,
                {
                    **base,
                    "urls": [f"http://127.0.0.1:{p}/v1/completions" for p in ports],
                    "headers": {},
                    "ca": "",
                },
            )
            if args.profile:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--nonblocking",
                        "--pid",
                        str(gateway_process.pid),
                        "-f",
                        "raw",
                        "-o",
                        args.profile,
                        "--duration",
                        str(int(args.duration + 2)),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                processes.append(spy)
            cpu_before = cpu_seconds(gateway_process.pid)
            through = run_phase(
                "gateway",
                args.client_procs,
                {
                    **base,
                    "urls": [f"{gateway_url}/v1/completions"],
                    "headers": {"Authorization": f"Bearer {token}"},
                    "body": {**body, "model": "bench"},
                    "ca": ca,
                },
            )
            # CPU the gateway spent per request: what one core of it can carry,
            # whatever else the machine was running.
            gateway_cpu_ms = 1000 * (cpu_seconds(gateway_process.pid) - cpu_before)
            cpu_per_request_ms = gateway_cpu_ms / max(1, through["requests"])
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    result = {
        "requests_per_s": round(through["requests_per_s"], 1),
        "gateway_cpu_ms_per_request": round(cpu_per_request_ms, 3),
        "gateway_requests_per_cpu_s": round(1000 / max(1e-9, cpu_per_request_ms), 1),
        "direct_requests_per_s": round(direct["requests_per_s"], 1),
        "added_latency_p50_ms": round(through["ttfb_p50_ms"] - direct["ttfb_p50_ms"], 3),
        "added_latency_p99_ms": round(through["ttfb_p99_ms"] - direct["ttfb_p99_ms"], 3),
        "ttfb_direct_p50_ms": round(direct["ttfb_p50_ms"], 3),
        "ttfb_direct_p99_ms": round(direct["ttfb_p99_ms"], 3),
        "ttfb_gateway_p50_ms": round(through["ttfb_p50_ms"], 3),
        "ttfb_gateway_p99_ms": round(through["ttfb_p99_ms"], 3),
        "errors": direct["errors"] + through["errors"],
        "route_decision_p99_us": round(decision_p99, 1),
        "route_decision_p50_us": round(decision_p50, 1),
        "route_decision_replicas": DECISION_REPLICAS,
        "clients": args.clients,
        "engines": args.engines,
        "max_tokens": args.max_tokens,
        "tls": not args.insecure,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
