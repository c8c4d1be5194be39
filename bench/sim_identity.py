"""The default packing policy's placements, unchanged by a speed-up: a few simulated seeds
against figures recorded before it.

Run: python -m bench.sim_identity [--policy P]
Replays each (trace, seed) below and compares its unallocated GPU % at 100 % arrival
(exact float), its placed and failed pod counts and a hash of its whole allocation
curve with the recorded ones; prints CPU seconds per seed, and as its last line
one JSON object (identical / different counts, CPU s per seed). Exit status 1 on any
difference. The figures of each recorded policy (the default and the previous
one) were recorded before a speed-up (see RECORDED); a change meant to alter
placements must re-record them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

from scheduler.placement.policies import DEFAULT_PACKING_POLICY
from scheduler.sim.run import SeedResult, simulate
from scheduler.sim.trace import read_nodes, read_pods
from scheduler.sim.traces import default_nodes, resolve_pods

# policy -> (trace, seed) -> (unallocated % at 100 %, placed, failed, allocation hash)
RECORDED: dict[str, dict[tuple[str, int], tuple[float, int, int, str]]] = {
    # The previous default, recorded at commit 0fb1b36.
    "fgd+mem+cs+all+walk": {
        ("gpushare40", 42): (5.9656097753586295, 8994, 2732, "15eb19c8c894"),
        ("gpushare40", 43): (5.886217769254387, 8969, 2710, "5e6169ae2288"),
        ("gpuspec10", 42): (4.373631680618075, 8385, 2386, "55bbbc51b0ce"),
        ("gpuspec10", 43): (4.405505473277344, 8404, 2388, "f934a9eeea07"),
        ("default", 42): (4.371377978106736, 8357, 2414, "13d7bab1a7d3"),
        ("default", 43): (4.343528654217835, 8386, 2406, "3d1e0d98dc93"),
        ("multigpu30", 42): (3.665025423540726, 6619, 1871, "911e99b2a5fb"),
        ("multigpu30", 43): (3.559273965960088, 6661, 1838, "8fd94543a003"),
        ("cpu200", 42): (4.406716313446438, 9172, 2511, "de36a5073c56"),
        ("cpu200", 43): (4.3370824281962115, 9168, 2409, "c7efbe063207"),
    },
    # The default since the fourth placement pass, recorded at commit be6b7cc
    # (before the change-log class scan).
    "fgd+mem+cs+c99+walk": {
        ("gpushare40", 42): (5.897193806266571, 9001, 2725, "160a0518c5bf"),
        ("gpushare40", 43): (5.909881645622605, 8964, 2715, "b5b11370d39d"),
        ("gpuspec10", 42): (4.375885383129514, 8381, 2390, "2c3cfa82dc6e"),
        ("gpuspec10", 43): (4.381841596909055, 8406, 2386, "0d1c6f4f99b6"),
        ("default", 42): (4.394236960721187, 8355, 2416, "0071b3737d1b"),
        ("default", 43): (4.306664520283405, 8405, 2387, "316869857331"),
        ("multigpu30", 42): (3.699313897461991, 6656, 1834, "5998b82fc699"),
        ("multigpu30", 43): (3.511141319469317, 6683, 1816, "cf6f12a1443e"),
        ("cpu200", 42): (4.352305495674543, 9182, 2501, "3b6465f82d10"),
        ("cpu200", 43): (4.2550752531435165, 9194, 2383, "b59f1ff7967f"),
    },
}


def fingerprint(result: SeedResult) -> tuple[float, int, int, str]:
    curve = hashlib.sha256(repr(result.allocation).encode()).hexdigest()[:12]
    return (result.unallocated(100) or 0.0, result.placed, result.failed, curve)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=DEFAULT_PACKING_POLICY, choices=sorted(RECORDED))
    args = parser.parse_args()
    recorded_runs = RECORDED[args.policy]
    nodes = read_nodes(default_nodes())
    differences = 0
    cpu_seconds: dict[str, float] = {}
    for (trace, seed), recorded in recorded_runs.items():
        result = simulate(nodes, read_pods(resolve_pods(trace)), args.policy, seed)
        got = fingerprint(result)
        verdict = "same" if got == recorded else f"DIFFERENT (recorded {recorded})"
        differences += got != recorded
        cpu_seconds[f"{trace}/{seed}"] = round(result.cpu_seconds, 2)
        line = f"{trace} seed {seed}: {got[0]!r} {verdict}, {result.cpu_seconds:.2f} CPU s"
        print(line, flush=True)
    summary = {
        "policy": args.policy,
        "seeds": len(recorded_runs),
        "identical": len(recorded_runs) - differences,
        "different": differences,
        "cpu_s_per_seed_mean": round(sum(cpu_seconds.values()) / len(cpu_seconds), 2),
        "cpu_s": cpu_seconds,
    }
    print(json.dumps(summary))
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
