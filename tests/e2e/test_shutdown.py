"""Clean shutdown: an agent survives SIGINT and SIGTERM arriving together, and
`gpupool up` (embedded PostgreSQL, simulated agents) leaves no process behind
after one Ctrl-C, two Ctrl-Cs, a SIGTERM, or a Ctrl-C with a frozen agent.

`up` runs in its own process group, as a terminal's foreground job: a Ctrl-C
there is SIGINT to the whole group (`up` and its agents at once), which is
how the agents got SIGINT and `up`'s SIGTERM back to back. The time bounds
below are liveness timeouts (a hung process fails the test instead of hanging
it), not performance figures: those are bench/shutdown.py's.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from bench.support.processes import (
    alive_in_group,
    processes_using,
    start_up,
    wait_until_up,
)
from tests.e2e.conftest import Cluster, agent_env, wait_for

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
    called Event.set() and could re-enter it (and deadlock on its lock)."""
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


@pytest.mark.parametrize("how", ["one_ctrl_c", "two_ctrl_c", "sigterm", "frozen_agent"])
def test_up_stops_everything(tmp_path: Path, how: str) -> None:
    """frozen_agent: one agent is SIGSTOPped, so only SIGKILL ends it; `up`
    must kill it after its deadline and still stop the rest."""
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text(FLEET)
    data_dir = tmp_path / "data"
    log = tmp_path / "up.log"
    up = start_up(fleet, data_dir, log, agent_env())
    pgid = up.pid
    try:
        assert wait_until_up(up, log, START_BOUND_S), log.read_text()
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
        wait_for(lambda: not alive_in_group(pgid), timeout=EXIT_BOUND_S, what="the group to end")
        wait_for(
            lambda: not processes_using(data_dir), timeout=EXIT_BOUND_S, what="PostgreSQL to stop"
        )
        assert "Traceback" not in log.read_text()
    finally:  # a failed run must not leave its processes to the next tests
        if up.poll() is None or alive_in_group(pgid):
            os.killpg(pgid, signal.SIGKILL)
            up.wait()
        for leftover in processes_using(data_dir):
            leftover.terminate()
