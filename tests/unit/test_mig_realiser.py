"""MIG realisation on the simulated backend: create at the scheduler's
placement, report the device, adopt rather than duplicate, destroy on release."""

from __future__ import annotations

from pathlib import Path

from agent.nvml import SimulatedNvml
from agent.workers.gang import GangSpec, RankBinding
from agent.workers.mig import MigRealiser
from gpupool.v1 import agents_pb2
from scheduler.domain.layout import ParallelLayout as Layout

FLEET = Path(__file__).resolve().parents[2] / "deploy" / "fleets" / "mixed.yaml"


def test_mig_instance_made_reported_adopted_and_destroyed() -> None:
    backend = SimulatedNvml.from_fleet_file(FLEET, "a100-40-mig")
    gpu = backend.devices()[1]
    sent: list[agents_pb2.AgentMessage] = []
    binding = RankBinding(
        rank=0, node="a100-40-mig", gpu_uuid=gpu.uuid, gpu_index=1,
        mig_profile="3g.20gb", mig_start=4,
    )  # fmt: skip
    spec = GangSpec("a-mig", "placed", "mig", (binding,), Layout(tp=1))
    realiser = MigRealiser(backend, "a100-40-mig", sent.append)

    devices = realiser.realise(spec)
    assert devices is not None and devices[0].startswith("MIG-")
    (instance,) = backend.devices()[1].mig_instances
    assert (instance.profile, instance.start, instance.uuid) == ("3g.20gb", 4, devices[0])
    assert sent[0].mig_device.mig_device_uuid == devices[0]
    assert sent[0].mig_device.mig_start == 4

    again = MigRealiser(backend, "a100-40-mig", sent.append)  # a restarted agent
    assert again.realise(spec) == devices
    assert len(backend.devices()[1].mig_instances) == 1, "adopted, not made twice"

    again.release("a-mig")
    assert backend.devices()[1].mig_instances == ()


def test_a_placement_that_does_not_fit_is_refused() -> None:
    backend = SimulatedNvml.from_fleet_file(FLEET, "a100-40-mig")
    gpu = backend.devices()[0]
    bad = RankBinding(
        rank=0, node="a100-40-mig", gpu_uuid=gpu.uuid, gpu_index=0,
        mig_profile="3g.20gb", mig_start=1,
    )  # fmt: skip
    spec = GangSpec("a-bad", "placed", "mig", (bad,), Layout(tp=1))
    assert MigRealiser(backend, "a100-40-mig", lambda m: None).realise(spec) is None
