"""The chaos run's clients: one process, a thread per client, each doing
Allocate / Release / WatchAllocation churn against every replica (one
round-robin channel over both) and writing every attempt — request id,
status code, answer — as a JSON line to its own log.

A call that fails UNAVAILABLE, DEADLINE_EXCEEDED or ABORTED is retried with
the same request id (that is what request ids are for) until it gets an
answer or the run ends. Run: python -m bench.support.chaos_clients CONFIG.json
(the token comes in GPUPOOL_CHAOS_TOKEN).
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import grpc

from gpupool.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler.security.channels import ClientCredentials, open_channel

RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.ABORTED}
CALL_TIMEOUT_S = 5.0
WATCH_S = 1.0
MAX_HELD = 3
# How long a client keeps an allocation: most briefly (churn), some for
# longer than a node's timeout plus grace, so a node fault has work to move.
SHORT_HOLD_S = (0.5, 3.0)
LONG_HOLD_S = (15.0, 40.0)
LONG_SHARE = 0.35
PAUSE_S = (0.1, 0.4)  # between two operations of one client: keeps the CPU modest
MIG_PROFILES = ("1g.5gb", "2g.10gb", "3g.20gb")  # A100-40GB's


@dataclass(frozen=True)
class ClientConfig:
    target: str  # ipv4:a,b — every replica's API port
    ca_cert: str  # PEM file
    out_dir: str
    clients: int
    seconds: float
    seed: int
    run_id: str
    template: str  # the worker template every allocation runs


def request_for(rng: random.Random, cfg: ClientConfig, client: int, n: int) -> Any:
    r = scheduler_pb2.AllocateRequest(
        tenant=f"chaos-{client % 4}", request_id=f"{cfg.run_id}-c{client}-{n}"
    )
    roll = rng.random()
    if roll < 0.50:
        r.whole.count = 1
    elif roll < 0.65:
        r.whole.count = 2
    elif roll < 0.70:
        r.whole.count = 4  # a whole node: often waits, so the queue is never empty
    elif roll < 0.88:
        r.fraction.milli_gpu = rng.randrange(200, 801, 100)
        r.fraction.memory_mib = rng.randrange(4, 33) * 1024
        r.gpu_models.extend(["H100-80GB", "H200"])
    else:
        r.mig.profile = rng.choice(MIG_PROFILES)
    r.priority_class = "normal"
    r.worker.template = cfg.template
    return r


class Client:
    def __init__(self, cfg: ClientConfig, index: int, channel: grpc.Channel, end: float) -> None:
        self.cfg, self.index, self.end = cfg, index, end
        self.stub = scheduler_pb2_grpc.SchedulerStub(channel)  # type: ignore[no-untyped-call]
        self.rng = random.Random(cfg.seed * 1000 + index)
        self.log: IO[str] = (Path(cfg.out_dir) / f"client-{index}.jsonl").open("a", buffering=1)
        self.held: list[tuple[float, str]] = []  # (release at, allocation id)
        self.stop_file = Path(cfg.out_dir) / "stop"  # the run says when it is over
        self._checked, self._done = 0.0, False

    def done(self) -> bool:
        now = time.monotonic()
        if not self._done and now - self._checked > 0.2:
            self._checked, self._done = now, self.stop_file.exists()
        return self._done or now >= self.end

    def write(self, **entry: Any) -> None:
        self.log.write(json.dumps({"t": time.time(), "client": self.index, **entry}) + "\n")

    def call(self, rpc: str, method: Any, request: Any, key: str) -> Any:
        """One logical call with its retries; the answer, or None."""
        attempt = 0
        while not self.done():
            try:
                response = method(request, timeout=CALL_TIMEOUT_S)
            except grpc.RpcError as exc:
                code = exc.code()
                self.write(
                    rpc=rpc,
                    key=key,
                    attempt=attempt,
                    code=code.name,
                    message=str(exc.details() or ""),
                )
                if code not in RETRIED:
                    return None
                attempt += 1
                time.sleep(min(2.0, 0.1 * 2**attempt) * self.rng.uniform(0.5, 1.0))
                continue
            a = response.allocation
            self.write(
                rpc=rpc,
                key=key,
                attempt=attempt,
                code="OK",
                allocation_id=a.id,
                state=types_pb2.AllocationState.Name(a.state),
                nodes=sorted({b.node for b in a.bindings}),
            )
            return response
        self.write(rpc=rpc, key=key, attempt=attempt, code="GAVE_UP", message="the run ended")
        return None

    def allocate(self, n: int) -> None:
        request = request_for(self.rng, self.cfg, self.index, n)
        key = f"{request.tenant}/{request.request_id}"
        response = self.call("Allocate", self.stub.Allocate, request, key)
        if response is not None:
            long = self.rng.random() < LONG_SHARE
            hold = self.rng.uniform(*(LONG_HOLD_S if long else SHORT_HOLD_S))
            self.held.append((time.monotonic() + hold, response.allocation.id))

    def release(self, allocation_id: str) -> None:
        request = scheduler_pb2.ReleaseRequest(allocation_id=allocation_id)
        self.call("Release", self.stub.Release, request, allocation_id)

    def watch(self) -> None:
        allocation_id = self.rng.choice(self.held)[1]
        request = scheduler_pb2.WatchAllocationRequest(allocation_id=allocation_id)
        seen = 0
        try:
            for _ in self.stub.WatchAllocation(request, timeout=WATCH_S):
                seen += 1
            code, message = "OK", ""
        except grpc.RpcError as exc:
            code, message = exc.code().name, str(exc.details() or "")
        # DEADLINE_EXCEEDED is how a watch of WATCH_S ends: it is logged like any code.
        self.write(
            rpc="Watch", key=allocation_id, attempt=0, code=code, message=message, messages=seen
        )

    def run(self) -> None:
        n = 0
        try:
            while not self.done():
                due = sorted(h for h in self.held if h[0] <= time.monotonic())
                if due:
                    self.held.remove(due[0])
                    self.release(due[0][1])
                elif self.held and self.rng.random() < 0.2:
                    self.watch()
                elif len(self.held) < MAX_HELD:
                    self.allocate(n)
                    n += 1
                time.sleep(self.rng.uniform(*PAUSE_S))
        finally:
            self.log.close()


def main(config_path: str) -> None:
    cfg = ClientConfig(**json.loads(Path(config_path).read_text()))
    # One target for several addresses has no host name of its own: name the
    # one the serving certificate carries.
    credentials = ClientCredentials(
        ca_pem=Path(cfg.ca_cert).read_bytes(),
        token=os.environ["GPUPOOL_CHAOS_TOKEN"],
        server_name="127.0.0.1",
    )
    options = [("grpc.lb_policy_name", "round_robin"), ("grpc.enable_retries", 0)]
    channel = open_channel(cfg.target, credentials, options)
    end = time.monotonic() + cfg.seconds
    clients = [Client(cfg, i, channel, end) for i in range(cfg.clients)]
    threads = [threading.Thread(target=c.run, daemon=True) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    channel.close()


def write_config(cfg: ClientConfig, path: Path) -> None:
    path.write_text(json.dumps(asdict(cfg)))


if __name__ == "__main__":
    main(sys.argv[1])
