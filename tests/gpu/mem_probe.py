"""A worker for a fractional allocation: caps torch's CUDA allocator at the
claimed memory (GPUPOOL_MEMORY_LIMIT_MIB of GPUPOOL_GPU_MEMORY_MIB, both set
by the agent), then tries to allocate --mib. Exits 0 when the outcome is the
expected one (--expect ok | oom), 3 otherwise."""

from __future__ import annotations

import argparse
import os
import sys

import torch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, required=True)
    parser.add_argument("--expect", choices=("ok", "oom"), required=True)
    args = parser.parse_args()
    limit = int(os.environ["GPUPOOL_MEMORY_LIMIT_MIB"])
    total = torch.cuda.get_device_properties(0).total_memory // (1024 * 1024)
    torch.cuda.set_per_process_memory_fraction(min(1.0, limit / total), 0)
    print(f"READY cap {limit} MiB of {total} MiB; allocating {args.mib} MiB", flush=True)
    try:
        block = torch.empty(args.mib * 1024 * 1024, dtype=torch.uint8, device="cuda")
        block.fill_(1)
        torch.cuda.synchronize()
        outcome = "ok"
    except torch.OutOfMemoryError as exc:
        outcome = "oom"
        print(f"refused: {str(exc).splitlines()[0]}", flush=True)
    print(f"outcome {outcome} (expected {args.expect})", flush=True)
    sys.exit(0 if outcome == args.expect else 3)


if __name__ == "__main__":
    main()
