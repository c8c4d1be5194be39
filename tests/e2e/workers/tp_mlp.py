"""A Megatron-style tensor- and pipeline-parallel MLP, launched by gpupool.

Each pipeline stage is an MLP: a column-parallel Linear (each TP rank holds
ffn/tp columns of W1), ReLU, then a row-parallel Linear (the matching rows
of W2) whose partial outputs one all_reduce sums. Stages pass activations
with send/recv. The state x is iterated for --steps steps:
x ← tanh(MLP_pp-1(… MLP_0(x))). Weights come from a fixed seed, so
`--single` (one process, whole matrices) gives the reference result.

Everything comes from the environment the agent sets: RANK, WORLD_SIZE,
MASTER_ADDR/PORT (init_method env://), GPUPOOL_TP_SIZE, GPUPOOL_PP_SIZE,
GPUPOOL_RESUME_FROM and GPUPOOL_CHECKPOINT_SOCKET (the checkpoint hook:
one JSON line in, {"checkpoint_uri": …} out).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

HIDDEN, FFN, SEED = 16, 64, 1234
DTYPE = torch.float64  # exact enough that the TP sum matches the single result


def weights(pp: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(SEED)
    return [
        (
            torch.randn(HIDDEN, FFN, generator=generator, dtype=DTYPE) / HIDDEN**0.5,
            torch.randn(FFN, HIDDEN, generator=generator, dtype=DTYPE) / FFN**0.5,
        )
        for _ in range(pp)
    ]


def initial_x() -> torch.Tensor:
    generator = torch.Generator().manual_seed(SEED + 1)
    return torch.randn(4, HIDDEN, generator=generator, dtype=DTYPE)


def single(steps: int, pp: int) -> torch.Tensor:
    x = initial_x()
    for _ in range(steps):
        for w1, w2 in weights(pp):
            x = torch.relu(x @ w1) @ w2
        x = torch.tanh(x)
    return x


class CheckpointHook:
    """Serves the agent's checkpoint requests; the training loop answers them
    at a step boundary every rank agrees on."""

    def __init__(self, path: str) -> None:
        self.requested = threading.Event()
        self.done = threading.Event()
        self.uri = ""
        signal.signal(signal.SIGUSR1, lambda signum, frame: self.requested.set())
        if not path:
            return
        Path(path).unlink(missing_ok=True)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self._server.accept()
            with conn:
                line = conn.makefile("rb").readline()
                request = json.loads(line or b"{}")
                if request.get("action") != "checkpoint":
                    conn.sendall(b'{"error": "unknown action"}\n')
                    continue
                self.requested.set()
                self.done.wait(max(0.1, float(request.get("deadline", 0)) - time.time()))
                conn.sendall(json.dumps({"checkpoint_uri": self.uri}).encode() + b"\n")


def stage_group(rank: int, tp: int, world: int) -> Any:
    """Create every TP group (all ranks must call new_group alike); return ours."""
    mine = None
    for first in range(0, world, tp):
        ranks = list(range(first, first + tp))
        group = dist.new_group(ranks)
        if rank in ranks:
            mine = group
    return mine


def run(args: argparse.Namespace) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    tp, pp = int(os.environ["GPUPOOL_TP_SIZE"]), int(os.environ["GPUPOOL_PP_SIZE"])
    tp_rank, pp_rank = rank % tp, (rank // tp) % pp
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(device.index or 0)  # NCCL binds to the current device
    hook = CheckpointHook(os.environ.get("GPUPOOL_CHECKPOINT_SOCKET", ""))
    dist.init_process_group(args.backend, init_method="env://")
    group = stage_group(rank, tp, world)
    w1, w2 = weights(pp)[pp_rank]
    shard = slice(tp_rank * FFN // tp, (tp_rank + 1) * FFN // tp)
    w1, w2 = w1[:, shard].to(device), w2[shard, :].to(device)
    x, step = initial_x().to(device), 0
    resume = os.environ.get("GPUPOOL_RESUME_FROM", "")
    if resume:
        state = torch.load(Path(resume) / f"rank{rank}.pt")
        x, step = state["x"].to(device), int(state["step"])
        print(f"resumed from {resume} at step {step}", flush=True)
    print(f"READY rank {rank}/{world} tp {tp_rank}/{tp} pp {pp_rank}/{pp}", flush=True)
    while step < args.steps:
        # Agree on checkpointing at this boundary: any rank asked, all save.
        flag = torch.tensor([1.0 if hook.requested.is_set() else 0.0], dtype=DTYPE)
        flag = flag.to(device) if args.backend == "nccl" else flag
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not hook.done.is_set():
            where = Path(args.checkpoint_dir) / f"step-{step}"
            where.mkdir(parents=True, exist_ok=True)
            torch.save({"x": x.cpu(), "step": step}, where / f"rank{rank}.pt")
            dist.barrier()
            hook.uri = str(where)
            hook.done.set()
            print(f"checkpoint at step {step}: {where}", flush=True)
        if hook.done.is_set():
            time.sleep(0.1)  # checkpointed: wait for the agent to stop us
            continue
        if pp_rank > 0:
            dist.recv(x, src=rank - tp)
        partial = torch.relu(x @ w1) @ w2
        if args.backend == "gloo" and device.type == "cuda":
            # gloo reduces host memory: a CUDA rank stages its partial there.
            staged = partial.cpu()
            dist.all_reduce(staged, group=group)
            partial = staged.to(device)
        else:
            dist.all_reduce(partial, group=group)  # sums the row-parallel partials
        x = partial
        if pp_rank < pp - 1:
            dist.send(x, dst=rank + tp)
        if pp > 1:  # the last stage hands the new state back to stage 0
            if pp_rank == pp - 1:
                dist.send(torch.tanh(x), dst=rank - tp * (pp - 1))
            elif pp_rank == 0:
                dist.recv(x, src=rank + tp * (pp - 1))
        if pp_rank == pp - 1 or pp == 1:
            x = torch.tanh(x)
        step += 1
        time.sleep(args.step_seconds)
    if pp_rank == pp - 1 and tp_rank == 0:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        result = {"x": x.cpu().tolist(), "steps": step, "resumed_from": resume}
        (Path(args.out) / "result.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--out", default="out")
    parser.add_argument("--checkpoint-dir", default="checkpoints")
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--single", action="store_true", help="print the reference result")
    parser.add_argument("--pp", type=int, default=1, help="with --single: stages")
    args = parser.parse_args()
    if args.single:
        json.dump({"x": single(args.steps, args.pp).tolist()}, sys.stdout)
        return
    run(args)


if __name__ == "__main__":
    main()
