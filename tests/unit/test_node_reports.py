"""What agents report is checked before anything is stored (domain/node_reports.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.errors import InvalidArgument
from scheduler.domain.node_reports import (
    MAX_GPUS_PER_NODE,
    MAX_LABELS,
    GpuHealthReport,
    GpuSpecInput,
    max_memory_mib,
    validate_health,
    validate_hello_extras,
    validate_registration,
    validate_residency_bounds,
)
from scheduler.domain.residency import ResidentModel
from scheduler.fleetfile import gpu_uuid, load_fleet
from scheduler.simfleet import register_request

ROOT = Path(__file__).resolve().parents[2]
UUID = "GPU-5a7f8b3c-1111-2222-3333-444455556666"

# What real NVML reports (nvidia-smi --query-gpu=name,memory.total): the
# catalogue keeps the datasheet figure, GB x 1024 MiB, which real parts stay under.
REAL_PARTS = [
    ("NVIDIA H100 80GB HBM3", 81559),
    ("NVIDIA A100-SXM4-80GB", 81920),
    ("NVIDIA A100-SXM4-40GB", 40960),
    ("NVIDIA H100 NVL", 95830),
    ("NVIDIA H200", 143771),
    ("NVIDIA B200", 183359),
    ("NVIDIA L40S", 46068),
    ("NVIDIA L4", 23034),
]


def gpu(index: int = 0, **changes: object) -> GpuSpecInput:
    base = GpuSpecInput(
        uuid=gpu_uuid("n", index),
        index=index,
        model="H100-80GB",
        memory_mib=81559,
        mig_enabled=False,
        pci_bus_id=f"00000000:{0x18 + index * 0x10:02X}:00.0",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def register(
    gpus: list[GpuSpecInput] | None = None,
    name: str = "n",
    hostname: str = "n.example.com",
    labels: dict[str, str] | None = None,
) -> list[GpuSpecInput]:
    return validate_registration(name, hostname, labels or {}, gpus or [gpu()])


def rejected(match: str, **kwargs: object) -> None:
    with pytest.raises(InvalidArgument, match=match) as info:
        register(**kwargs)  # type: ignore[arg-type]
    assert len(info.value.message) < 400, "an error quotes at most a short piece of the input"


def test_every_node_of_the_mixed_fleet_passes() -> None:
    for node in load_fleet(ROOT / "deploy" / "fleets" / "mixed.yaml"):
        request = register_request(node)
        specs = [
            GpuSpecInput(
                g.uuid, g.index, g.model, g.memory_mib, g.mig_enabled, tuple(g.nvlink_peers),
                g.pci_bus_id,
            )
            for g in request.gpus
        ]  # fmt: skip
        resolved = validate_registration(
            request.name, request.hostname, dict(request.labels), specs
        )
        assert [g.memory_mib for g in resolved] == [g.memory_mib for g in request.gpus]


@pytest.mark.parametrize(("nvml_name", "memory"), REAL_PARTS)
def test_real_parts_pass_with_their_nvml_names_and_memory(nvml_name: str, memory: int) -> None:
    (resolved,) = register([gpu(model=nvml_name, memory_mib=memory)])
    assert resolved.memory_mib == memory
    assert resolved.model in CATALOGUE


def test_unreported_memory_takes_the_catalogue_figure() -> None:
    (resolved,) = register([gpu(model="L4", memory_mib=0)])
    assert resolved.memory_mib == CATALOGUE["L4"].memory_mib


def test_memory_above_the_datasheet_is_refused() -> None:
    rejected("reports 80000 MiB; the model has 24576 MiB", gpus=[gpu(model="L4", memory_mib=80000)])
    rejected("reports 18446744073709551615 MiB", gpus=[gpu(memory_mib=2**64 - 1)])
    l4 = CATALOGUE["L4"]
    assert max_memory_mib(l4) < 25 * 1024, "an L4 cannot pass for the next size up"
    register([gpu(model="L4", memory_mib=max_memory_mib(l4))])
    rejected("at most", gpus=[gpu(model="L4", memory_mib=max_memory_mib(l4) + 1)])


def test_node_names_and_hostnames() -> None:
    for name in ("h100-sxm-0", "node.zone-a.example", "GPU_Host01", "a"):
        register(name=name)
    rejected("node name", name="")
    rejected("node name", name="a" * 254)
    rejected("node name", name="a,b")
    rejected("node name", name="fleet:x")
    rejected("node name", name="-a")
    register(hostname="h" * 253)
    register(hostname="10.0.0.7")
    rejected("hostname .* is over 253", hostname="h" * 254)
    rejected("printable ASCII", hostname="a b")


def test_labels() -> None:
    register(labels={"zone": "zone-a", "nvlink-domain": "node", "spot": "true"})
    register(labels={"topology.kubernetes.io/zone": "us-east-1a", "empty": ""})
    register(labels={f"k{i}": "v" for i in range(MAX_LABELS)})
    rejected("labels; at most 64", labels={f"k{i}": "v" for i in range(MAX_LABELS + 1)})
    rejected("name must be 1..63", labels={"k" * 64: "v"})
    rejected("name must be 1..63", labels={"": "v"})
    rejected("name must be 1..63", labels={"bad key": "v"})
    rejected("prefix must be a DNS subdomain", labels={"Upper.io/zone": "a"})
    rejected("prefix must be a DNS subdomain", labels={"/zone": "a"})
    register(labels={"k": "v" * 256})
    rejected("value of 2500000 characters; at most 256", labels={"k": "v" * 2_500_000})
    rejected("control characters", labels={"k": "a\nb"})


def test_gpu_count_indexes_and_uuids() -> None:
    many = [gpu(i, nvlink_peers=()) for i in range(MAX_GPUS_PER_NODE)]
    register(many)
    rejected("at most 72", gpus=[*many, gpu(72)])
    rejected("must be unique", gpus=[gpu(0), gpu(0, uuid=gpu_uuid("n", 1))])
    rejected("must be unique", gpus=[gpu(0), gpu(1, uuid=gpu_uuid("n", 0))])
    rejected("index 4294967295 is outside", gpus=[gpu(2**32 - 1)])
    rejected("has no UUID", gpus=[gpu(uuid="")])
    for bad in ("GPU-a", "GPU-h100-0", "5a7f8b3c-1111-2222-3333-444455556666", UUID + "0"):
        rejected("not NVML's form", gpus=[gpu(uuid=bad)])
    rejected(r"'GPUGPUGPU.*… \(30000 characters\)", gpus=[gpu(uuid="GPU" * 10_000)])
    register([gpu(uuid=UUID.upper().replace("GPU-", "GPU-"))])


def test_models_mig_peers_and_bus_ids() -> None:
    rejected("'Voodoo 5' is not in the catalogue", gpus=[gpu(model="Voodoo 5")])
    rejected("L4 does not support MIG", gpus=[gpu(model="L4", memory_mib=0, mig_enabled=True)])
    register([gpu(model="A100-40GB", memory_mib=40960, mig_enabled=True)])
    pair = [gpu(0, nvlink_peers=(1,)), gpu(1, nvlink_peers=(0,))]
    register(pair)
    rejected("lists itself", gpus=[gpu(0, nvlink_peers=(0,))])
    rejected("peers must be unique", gpus=[gpu(0, nvlink_peers=(1, 1)), gpu(1)])
    rejected("peers 5 are not GPUs of this node", gpus=[gpu(0, nvlink_peers=(5,))])
    register([gpu(pci_bus_id="0000:28:00.0")])
    register([gpu(pci_bus_id="")])
    rejected("PCI bus id", gpus=[gpu(pci_bus_id="x" * 40)])


def health(**changes: object) -> GpuHealthReport:
    base = GpuHealthReport(
        uuid=UUID,
        health="healthy",
        temperature_c=41.0,
        power_mw=310_000,
        utilization_pct=87,
        memory_used_mib=60_000,
        recent_xids=(),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_health_reports_within_range_pass() -> None:
    validate_health("n", [health()], {UUID: 81559})
    validate_health("n", [health(health="unhealthy", reasons=("xid 79",), recent_xids=(79, 48))])
    validate_health("n", [health(temperature_c=0.0, power_mw=0, memory_used_mib=0)])
    validate_health("n", [health(memory_used_mib=81559)], {UUID: 81559})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"temperature_c": float("nan")}, "temperature nan"),
        ({"temperature_c": float("inf")}, "temperature inf"),
        ({"temperature_c": 1e9}, "temperature"),
        ({"power_mw": 2**32 - 1}, "power 4294967295 mW"),
        ({"utilization_pct": 101}, "utilisation 101%"),
        ({"memory_used_mib": 90_000}, "90000 MiB used is more than the GPU's 81559"),
        ({"recent_xids": tuple(range(1, 100))}, "99 recent XIDs"),
        ({"recent_xids": (2**32 - 1,)}, "XID is outside"),
        ({"reasons": ("r",) * 17}, "17 reasons"),
        ({"reasons": ("r" * 5000,)}, "over 256 characters"),
        ({"uuid": "GPU-x" * 1000}, "not NVML's form"),
    ],
)
def test_health_out_of_range_is_refused(change: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match) as info:
        validate_health("n", [health(**change)], {UUID: 81559})
    assert len(info.value.message) < 400


def test_health_without_a_known_total_is_bounded_by_the_catalogue() -> None:
    validate_health("n", [health(memory_used_mib=150_000)])
    with pytest.raises(InvalidArgument, match="MiB used"):
        validate_health("n", [health(memory_used_mib=2**64 - 1)])


def test_health_report_count_and_duplicates() -> None:
    with pytest.raises(InvalidArgument, match="one health report per GPU"):
        validate_health("n", [health(), health()])
    with pytest.raises(InvalidArgument, match="73 health reports"):
        validate_health("n", [health(uuid=gpu_uuid("n", i)) for i in range(73)])


def test_residency_and_hello_bounds() -> None:
    validate_residency_bounds("n", [ResidentModel("llama-3.1-8b", "host_ram", size_bytes=16e9)])  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="size 18446744073709551615 bytes"):
        validate_residency_bounds("n", [ResidentModel("m", "host_ram", size_bytes=2**64 - 1)])
    with pytest.raises(InvalidArgument, match="1025 residency entries"):
        validate_residency_bounds("n", [ResidentModel(f"m{i}", "host_ram") for i in range(1025)])
    validate_hello_extras("n", "0.4.0", ["a" * 32])
    with pytest.raises(InvalidArgument, match="agent version"):
        validate_hello_extras("n", "v" * 65, [])
    with pytest.raises(InvalidArgument, match="running allocation id"):
        validate_hello_extras("n", "", ["a" * 33])
