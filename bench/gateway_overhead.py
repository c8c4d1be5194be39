"""What the gateway costs: N streaming clients through one `gpupool gateway` process
to simulated engines, against the same clients straight to the same engines in
the same run; and the routing decision's own cost with 64 replicas.

    python -m bench.gateway_overhead [--clients 64] [--duration 10] [--engines 4]
        [--max-tokens 8] [--client-procs 2] [--paced-rate 300] [--insecure]
        [--profile FILE] [--database-url URL]

1. `route_decision_p99_us`: the default policy's Router.route (+ finish) over 64
   replicas of mixed hardware with load booked and prefixes indexed, in this
   process, timed per call.
2. Engines: `gpupool engine simulate --speedup 1000` processes (the real
   simulated engine, all one GPU model), one gateway process in front of them
   (HTTPS from a throwaway local CA unless --insecure, tokens in a scratch
   database gpupool_bench_<random> that is dropped afterwards).
3. The same client processes (bare asyncio protocols on keep-alive
   connections, one prompt per user) run four phases, `direct` (round robin
   over the engines) then `gateway` each time:
   - saturated: closed loop, every client sends its next request when the last
     one ends, for --duration seconds -> requests_per_s, direct_requests_per_s;
   - paced: open loop at --paced-rate requests/s (below saturation) over a pool
     of --clients connections -> added_latency_p50_ms / added_latency_p99_ms:
     time from each request's due time to its first SSE byte, gateway
     percentile minus direct's.

JSON (last line): those, the gateway's CPU per streamed request (saturated),
the TTFB percentiles of each phase, route_decision_p50_us / _p99_us, the
inputs and the load average. Each phase also logs CPU ms per request of the
gateway, the engines and the clients and how busy the machine was. Targets:
>= 1,000 requests/s, added p99 < 5 ms, decision p99 < 200 µs. Everything talks
to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
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
from typing import Any, cast

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
# Well below the gateway's saturation on the shared 2-core development machine.
PACED_RATE = 300.0


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
    gc.freeze()  # as `gpupool gateway` does once it has started
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
# The load generator is test harness, not the system under test: a bare asyncio
# protocol per keep-alive connection that writes one prebuilt request and scans
# the answer for its end costs a fraction of an HTTP client library's CPU, which
# on a 2-core machine is CPU the gateway (and the engines) get instead.
class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._body_at = -1
        self._length = -1  # Content-Length, or -1: chunked
        self._status = 0
        self._sent = 0.0
        self._first = 0.0
        self._done: asyncio.Future[tuple[int, float]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def request(self, payload: bytes) -> asyncio.Future[tuple[int, float]]:
        """Send; the future gives (status, perf_counter() of the first body byte)."""
        assert self.transport is not None
        self._buffer.clear()
        self._body_at = self._length = -1
        self._first = 0.0
        self._done = asyncio.get_running_loop().create_future()
        self._sent = time.perf_counter()
        self.transport.write(payload)
        return self._done

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer
        buffer += data
        if self._body_at < 0:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            self._body_at = end + 4
            head = bytes(buffer[:end]).lower()
            self._status = int(head[9:12])
            at = head.find(b"content-length:")
            if at >= 0:
                line_end = head.find(b"\r\n", at)
                self._length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
        if not self._first and len(buffer) > self._body_at:
            self._first = now
        if self._length >= 0:
            finished = len(buffer) - self._body_at >= self._length
        else:
            finished = buffer.endswith(b"\r\n0\r\n\r\n")
        if finished and self._done is not None and not self._done.done():
            self._done.set_result((self._status, self._first or now))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self._done is not None and not self._done.done():
            self._done.set_exception(ConnectionError("the connection closed"))


async def _connect(target: dict[str, Any], context: ssl.SSLContext | None) -> _Connection:
    _, protocol = await asyncio.get_running_loop().create_connection(
        _Connection, target["host"], target["port"], ssl=context
    )
    return protocol


def _payloads(spec: dict[str, Any]) -> list[list[bytes]]:
    """Prebuilt requests: [user][target]. Each of `users` callers has its own prompt
    (as a fleet's users do), so prefix affinity spreads them over the replicas
    instead of sending every request to the one replica that holds the only prompt."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in spec["headers"].items())
    payloads = []
    for user in range(spec["users"]):
        body = json.dumps({**spec["body"], "prompt": f"User {user} says: " + spec["prompt"]})
        data = body.encode()
        payloads.append(
            [
                (
                    f"POST {t['path']} HTTP/1.1\r\nHost: {t['host']}:{t['port']}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n{extra}\r\n"
                ).encode()
                + data
                for t in spec["targets"]
            ]
        )
    return payloads


async def _closed_loop(
    spec: dict[str, Any], context: ssl.SSLContext | None, warm_s: float = 1.0
) -> dict[str, Any]:
    """`clients` connections, each sending its next request as the last one ends."""
    targets, payloads = spec["targets"], _payloads(spec)
    ttfb_ms: list[float] = []
    errors: list[int] = []
    # Users interleave across the client processes: every one is a distinct caller.
    users = [i * spec["procs"] + spec["offset"] for i in range(spec["clients"])]
    connections = [(await _connect(targets[u % len(targets)], context), u) for u in users]

    sent_total = 0

    async def client(connection: _Connection, user: int, until: float, record: bool) -> None:
        nonlocal sent_total
        payload = payloads[user % len(payloads)][user % len(targets)]
        while time.monotonic() < until:
            sent_total += 1
            sent = time.perf_counter()
            status, first = await connection.request(payload)
            if record:
                ttfb_ms.append((first - sent) * 1000)
                if status != 200:
                    errors.append(status)

    warm = time.monotonic() + warm_s
    await asyncio.gather(*(client(c, t, warm, False) for c, t in connections))
    start, cpu = time.monotonic(), time.process_time()
    until = start + spec["duration"]
    await asyncio.gather(*(client(c, t, until, True) for c, t in connections))
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    for connection, _ in connections:
        if connection.transport is not None:
            connection.transport.close()
    return {
        "ttfb_ms": ttfb_ms,
        "errors": len(errors),
        "elapsed": elapsed,
        "cpu_s": cpu,
        "sent": sent_total,
    }


async def _open_loop(spec: dict[str, Any], context: ssl.SSLContext | None) -> dict[str, Any]:
    """Requests started at a fixed `rate` per second whatever the answers (open
    loop), each on an idle one of `connections` keep-alive connections; with none
    idle it waits for one (a client's connection pool), and the time to its first
    byte counts from when it was due, so waiting is latency too."""
    targets, payloads = spec["targets"], _payloads(spec)
    idle: list[asyncio.Queue[_Connection]] = [asyncio.Queue() for _ in targets]
    for i in range(spec["connections"]):
        idle[i % len(targets)].put_nowait(await _connect(targets[i % len(targets)], context))
    ttfb_ms: list[float] = []
    errors: list[int] = []
    waited = 0
    pending: set[asyncio.Task[None]] = set()

    async def one(user: int, due: float, record: bool) -> None:
        nonlocal waited
        target = user % len(targets)
        pool = idle[target]
        if pool.empty():
            waited += record
        connection = await pool.get()
        status, first = await connection.request(payloads[user % len(payloads)][target])
        pool.put_nowait(connection)
        if record:
            ttfb_ms.append((first - due) * 1000)
            if status != 200:
                errors.append(status)

    interval = 1.0 / spec["rate"]
    loop = asyncio.get_running_loop()
    warm_n = int(spec["rate"])  # one second of warm-up, not recorded
    total = warm_n + int(spec["rate"] * spec["duration"])
    start = loop.time()
    # perf_counter() of the loop's clock start: due times on the clock TTFB uses.
    origin = time.perf_counter() - (loop.time() - start)
    cpu = 0.0
    n = 0
    while n < total:
        delay = start + n * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        while n < total and start + n * interval <= loop.time():
            if n == warm_n:
                cpu = time.process_time()
            user = n * spec["procs"] + spec["offset"]
            due = origin + n * interval
            task = loop.create_task(one(user, due, n >= warm_n))
            pending.add(task)
            task.add_done_callback(pending.discard)
            n += 1
    await asyncio.gather(*pending)
    elapsed, cpu = loop.time() - start - 1.0, time.process_time() - cpu
    for pool in idle:
        while not pool.empty():
            connection = pool.get_nowait()
            if connection.transport is not None:
                connection.transport.close()
    return {
        "ttfb_ms": ttfb_ms,
        "errors": len(errors),
        "elapsed": elapsed,
        "cpu_s": cpu,
        "waited": waited,
        "sent": total,
    }


def _client_process(spec: dict[str, Any]) -> dict[str, Any]:
    context = ssl.create_default_context(cafile=spec["ca"]) if spec["ca"] else None
    run = _open_loop(spec, context) if spec.get("rate") else _closed_loop(spec, context)
    return uvloop.run(run)


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run_phase(
    name: str, procs: int, spec: dict[str, Any], watched: dict[str, list[int]]
) -> dict[str, Any]:
    """One phase; `watched` names groups of processes whose CPU per request it reports."""
    if spec.get("rate"):
        what = f"{spec['rate']:g} requests/s paced (open loop)"
        per = {"rate": spec["rate"] / procs, "connections": max(1, spec["connections"] // procs)}
    else:
        what = f"{spec['clients']} streaming clients (closed loop)"
        per = {"clients": max(1, spec["clients"] // procs)}
    log(f"{name}: {what} for {spec['duration']} s …")
    parts_in = [{**spec, **per, "offset": i, "procs": procs} for i in range(procs)]
    with mp.get_context("spawn").Pool(procs) as pool:
        before = {k: sum(cpu_seconds(p) for p in pids) for k, pids in watched.items()}
        machine = busy_cpu_s()
        started = time.monotonic()
        parts = pool.map(_client_process, parts_in)
        wall = time.monotonic() - started
        machine = busy_cpu_s() - machine
        after = {k: sum(cpu_seconds(p) for p in pids) for k, pids in watched.items()}
    ttfb = [v for p in parts for v in p["ttfb_ms"]]
    elapsed = max(p["elapsed"] for p in parts)
    # Servers over the whole phase (warm-up included) per request sent in it;
    # clients over the measured part per request measured.
    sent = max(1, sum(p["sent"] for p in parts))
    cpu_ms = {k: round(1000 * (after[k] - before[k]) / sent, 3) for k in watched}
    cpu_ms["clients"] = round(1000 * sum(p["cpu_s"] for p in parts) / max(1, len(ttfb)), 3)
    result = {
        "requests": len(ttfb),
        "requests_per_s": len(ttfb) / elapsed,
        "ttfb_p50_ms": quantile(ttfb, 0.5),
        "ttfb_p99_ms": quantile(ttfb, 0.99),
        "errors": sum(p["errors"] for p in parts),
        "waited_for_connection": sum(p.get("waited", 0) for p in parts),
        "cpu_ms_per_request": cpu_ms,
        # Share of the machine's cores busy during the phase (everyone's processes).
        "machine_busy": round(machine / (wall * (os.cpu_count() or 1)), 2),
    }
    log(
        f"{name}: {result['requests_per_s']:.0f} requests/s, TTFB p50 "
        f"{result['ttfb_p50_ms']:.2f} ms p99 {result['ttfb_p99_ms']:.2f} ms, "
        f"{result['errors']} errors; CPU ms/request {cpu_ms}; machine "
        f"{result['machine_busy']:.0%} busy; {result['waited_for_connection']} waited"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--engines", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=PACED_RATE,
        help="Requests/s of the open-loop phases that measure added latency.",
    )
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
            # One GPU model for every engine: the policy spreads requests by hardware
            # speed, and a simulated engine's speed is its process's CPU, the same for
            # all (mixed hardware is what the decision benchmark above routes over).
            gpu_models = ["H100-80GB"]
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
            engines = list(processes)
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
            body = {"model": MODEL, "max_tokens": args.max_tokens, "stream": True}
            common = {"body": body, "prompt": "Say something. " * 20, "users": args.clients}
            direct = {
                **common,
                "targets": [
                    {"host": "127.0.0.1", "port": p, "path": "/v1/completions"} for p in ports
                ],
                "headers": {},
                "ca": "",
            }
            through = {
                **common,
                "targets": [{"host": "127.0.0.1", "port": gw_port, "path": "/v1/completions"}],
                "headers": {"Authorization": f"Bearer {token}"},
                "ca": ca,
                "body": {**body, "model": "bench"},
            }
            procs = args.client_procs
            closed = {"clients": args.clients, "duration": args.duration}
            paced = {
                "rate": args.paced_rate,
                "connections": args.clients,
                "duration": args.duration,
            }
            watched = {"gateway": [gateway_process.pid], "engines": [p.pid for p in engines]}
            direct_closed = run_phase("direct, saturated", procs, {**direct, **closed}, watched)
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
            gateway_closed = run_phase("gateway, saturated", procs, {**through, **closed}, watched)
            # CPU the gateway spent per request: what one core of it can carry,
            # whatever else the machine was running.
            cpu_per_request_ms = gateway_closed["cpu_ms_per_request"]["gateway"]
            direct_paced = run_phase("direct, paced", procs, {**direct, **paced}, watched)
            gateway_paced = run_phase("gateway, paced", procs, {**through, **paced}, watched)
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
        # Throughput: closed loop (each client sends its next request when the last
        # one ends), i.e. at saturation of whatever is slowest on the machine.
        "requests_per_s": round(gateway_closed["requests_per_s"], 1),
        "direct_requests_per_s": round(direct_closed["requests_per_s"], 1),
        "gateway_cpu_ms_per_request": round(cpu_per_request_ms, 3),
        "gateway_requests_per_cpu_s": round(1000 / max(1e-9, cpu_per_request_ms), 1),
        # Added latency: open loop at paced_rate (below saturation), time to the first
        # SSE byte from the request's send, gateway percentile minus direct's.
        "added_latency_p50_ms": round(
            gateway_paced["ttfb_p50_ms"] - direct_paced["ttfb_p50_ms"], 3
        ),
        "added_latency_p99_ms": round(
            gateway_paced["ttfb_p99_ms"] - direct_paced["ttfb_p99_ms"], 3
        ),
        "paced_rate": args.paced_rate,
        "paced_requests_per_s": round(gateway_paced["requests_per_s"], 1),
        "ttfb_direct_p50_ms": round(direct_paced["ttfb_p50_ms"], 3),
        "ttfb_direct_p99_ms": round(direct_paced["ttfb_p99_ms"], 3),
        "ttfb_gateway_p50_ms": round(gateway_paced["ttfb_p50_ms"], 3),
        "ttfb_gateway_p99_ms": round(gateway_paced["ttfb_p99_ms"], 3),
        # At saturation the TTFB is mostly queueing for the CPU (closed loop).
        "saturated_ttfb_direct_p99_ms": round(direct_closed["ttfb_p99_ms"], 3),
        "saturated_ttfb_gateway_p99_ms": round(gateway_closed["ttfb_p99_ms"], 3),
        "errors": sum(
            p["errors"] for p in (direct_closed, gateway_closed, direct_paced, gateway_paced)
        ),
        "route_decision_p99_us": round(decision_p99, 1),
        "route_decision_p50_us": round(decision_p50, 1),
        "route_decision_replicas": DECISION_REPLICAS,
        "clients": args.clients,
        "engines": args.engines,
        "max_tokens": args.max_tokens,
        "tls": not args.insecure,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
