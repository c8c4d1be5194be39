"""Clean shutdown: an agent survives SIGINT and SIGTERM arriving together, and
`gpupool up` (embedded PostgreSQL, simulated agents) leaves no process behind
after one Ctrl-C, two Ctrl-Cs or a SIGTERM.

`up` runs in its own process group, as a terminal's foreground job: a Ctrl-C
there is SIGINT to the whole group (`up` and its agents at once), which is
how the agents used to get SIGINT and `up`'s SIGTERM back to back. The time
bounds below are liveness timeouts (a hung process fails the test instead of
hanging it), not performance figures.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Cluster, agent_env, free_port, wait_for

EXIT_BOUND_S = 30.0
START_BOUND_S = 120.0
# Two small nodes: `up` starts fast and still runs more than one agent.
FLEET = """\
nodes:
  - name: small-a
    labels: {zone: zone-a}
    gpus: {model: L4, count: 2}
  - name: small-b
    labels: {zone: zone-b}
    gpus: {model: L40S, count: 1}
"""


def _signal_burst(pid: int, pairs: int) -> None:
    """SIGINT and SIGTERM back to back, again and again: the old handler
    re-entered Event.set() and deadlocked on its lock."""
    for _ in range(pairs):
        try:
            os.kill(pid, signal.SIGINT)
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return


def test_agent_exits_on_sigint_and_sigterm_together(cluster: Cluster) -> None:
    cluster.start_agent("l4")
    wait_for(lambda: cluster.connected(["l4"]), what="the agent to connect")
    process = cluster.agents["l4"]
    _signal_burst(process.pid, pairs=20)
    assert process.wait(timeout=EXIT_BOUND_S) == 0
    wait_for(lambda: not cluster.connected(["l4"]), what="its stream to end")


def _alive_in_group(pgid: int) -> list[psutil.Process]:
    alive = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return alive


def _using(path: Path) -> list[psutil.Process]:
    """Processes whose command line names path (the embedded PostgreSQL
    runs in a session of its own, outside the group)."""
    found = []
    for process in psutil.process_iter():
        try:
            if any(str(path) in part for part in process.cmdline()):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.mark.parametrize("how", ["one_ctrl_c", "two_ctrl_c", "sigterm", "frozen_agent"])
def test_up_stops_everything(tmp_path: Path, how: str) -> None:
    """frozen_agent: one agent is SIGSTOPped, so only SIGKILL ends it; `up`
    must kill it after its deadline and still stop the rest."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    env = {k: v for k, v in agent_env().items() if not k.startswith("GPUPOOL_")}
    command = [
        sys.executable, "-m", "scheduler.cli.main", "up",
        "--fleet", str(fleet),
        "--data-dir", str(data_dir),
        "--listen", f"127.0.0.1:{free_port()}",
        "--agent-listen", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    with log.open("wb") as out:
        up = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
            start_new_session=True,  # its own process group, like a terminal's job
        )  # fmt: skip
    pgid = up.pid
    try:
        wait_for(
            lambda: "gpupool is up" in log.read_text() or up.poll() is not None,
            timeout=START_BOUND_S,
            what="gpupool up to serve",
        )
        assert up.poll() is None, log.read_text()
        assert "2/2 simulated agents" in log.read_text()
        agents = psutil.Process(up.pid).children()
        assert len(agents) == 2, "one agent per node"

        if how == "frozen_agent":
            agents[0].suspend()
            os.killpg(pgid, signal.SIGINT)
        elif how == "sigterm":
            os.kill(up.pid, signal.SIGTERM)  # a supervisor stops `up` alone
        else:
            os.killpg(pgid, signal.SIGINT)
            if how == "two_ctrl_c":
                time.sleep(0.2)
                os.killpg(pgid, signal.SIGINT)
        assert up.wait(timeout=EXIT_BOUND_S) == 0, log.read_text()
        wait_for(lambda: not _alive_in_group(pgid), timeout=EXIT_BOUND_S, what="the group to end")
        wait_for(lambda: not _using(data_dir), timeout=EXIT_BOUND_S, what="PostgreSQL to stop")
        assert "Traceback" not in log.read_text()
    finally:  # a failed run must not leave its processes to the next tests
        if up.poll() is None or _alive_in_group(pgid):
            os.killpg(pgid, signal.SIGKILL)
            up.wait()
        for leftover in _using(data_dir):
            leftover.terminate()
