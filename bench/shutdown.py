"""How long `gpupool up` takes to stop, and what it leaves behind.

Run: python -m bench.shutdown [--fleet deploy/fleets/mixed.yaml] [--runs 2]

Each run starts `gpupool up` (embedded PostgreSQL in a temporary directory,
one simulated agent per node of the fleet, `up`'s own defaults otherwise) in
its own process group, waits until it serves, then stops it one way:

- one_ctrl_c: SIGINT to the group (a terminal's Ctrl-C: `up` and its agents);
- two_ctrl_c: the same twice, 0.2 s apart (`up` kills its agents at once);
- sigterm: SIGTERM to `up` alone (a supervisor);
- frozen_agent: one agent SIGSTOPped first, then one Ctrl-C (only SIGKILL
  ends it: `up` must kill it after its deadline).

From the signal it times when the agents are gone (the baseline: what the
agents themselves take), when `up` exits, and when nothing is left (group
and PostgreSQL); `left` counts processes still there after 30 s. Target
(issue 12): everything gone within 10 s, nothing left. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from pathlib import Path

import psutil

from bench.support.processes import alive_in_group, processes_using, start_up, wait_until_up

ROOT = Path(__file__).resolve().parents[1]
MODES = ("one_ctrl_c", "two_ctrl_c", "sigterm", "frozen_agent")
GIVE_UP_S = 30.0


def _gone(processes: list[psutil.Process]) -> bool:
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def run_once(fleet: Path, mode: str) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="gpupool-shutdown-") as tmp:
        data_dir = Path(tmp) / "data"
        log = Path(tmp) / "up.log"
        started = time.monotonic()
        up = start_up(fleet, data_dir, log, dict(os.environ))
        pgid = up.pid
        try:
            if not wait_until_up(up, log, 180):
                raise SystemExit(f"gpupool up did not start:\n{log.read_text()}")
            start_s = time.monotonic() - started
            agents = psutil.Process(up.pid).children()
            if mode == "frozen_agent":
                agents[0].suspend()
            signalled = time.monotonic()
            if mode == "sigterm":
                os.kill(up.pid, signal.SIGTERM)
            else:
                os.killpg(pgid, signal.SIGINT)
            if mode == "two_ctrl_c":
                time.sleep(0.2)
                os.killpg(pgid, signal.SIGINT)
            agents_s = up_s = gone_s = GIVE_UP_S
            while time.monotonic() - signalled < GIVE_UP_S:
                now = time.monotonic() - signalled
                if agents_s == GIVE_UP_S and _gone(agents):
                    agents_s = now
                if up_s == GIVE_UP_S and up.poll() is not None:
                    up_s = now
                if not alive_in_group(pgid) and not processes_using(data_dir):
                    gone_s = now
                    if up_s == GIVE_UP_S:  # it exited after the poll above
                        up.wait()
                        up_s = now
                    break
                time.sleep(0.05)
            left = len(alive_in_group(pgid)) + len(processes_using(data_dir))
        finally:
            if up.poll() is None or alive_in_group(pgid):
                os.killpg(pgid, signal.SIGKILL)
                up.wait()
            for leftover in processes_using(data_dir):
                leftover.terminate()
        return {
            "start_s": round(start_s, 2),
            "agents_gone_s": round(agents_s, 2),
            "up_exit_s": round(up_s, 2),
            "all_gone_s": round(gone_s, 2),
            "left": left,
            "agents": len(agents),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fleet", type=Path, default=ROOT / "deploy" / "fleets" / "mixed.yaml")
    parser.add_argument("--runs", type=int, default=2, help="Runs per way of stopping.")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float | int]]] = {mode: [] for mode in MODES}
    for run in range(args.runs):
        for mode in MODES:
            result = run_once(args.fleet, mode)
            results[mode].append(result)
            print(f"run {run + 1}/{args.runs} {mode}: {result}", flush=True)
    summary: dict[str, object] = {"fleet": args.fleet.name, "runs": args.runs}
    for mode, runs in results.items():
        summary[mode] = {
            "agents_gone_s_max": max(float(r["agents_gone_s"]) for r in runs),
            "up_exit_s_max": max(float(r["up_exit_s"]) for r in runs),
            "all_gone_s_max": max(float(r["all_gone_s"]) for r in runs),
            "left_total": sum(int(r["left"]) for r in runs),
        }
    summary["agents"] = results[MODES[0]][0]["agents"]
    summary["target_s"] = 10.0
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
