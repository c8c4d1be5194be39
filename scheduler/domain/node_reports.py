"""What a node agent reports about itself, checked before anything is stored.

An agent is trusted to speak for its own node, not to be right: a bug or a
hostile host must get INVALID_ARGUMENT with a reason a person can act on,
never a database error, a GPU that claims more memory than its model has
(the counters would then let more fractions onto it than fit), or a label so
large that listing the fleet fails for every admin.

Limits, and where they come from:
- node names follow Kubernetes node names (DNS subdomain, ≤ 253), with
  upper case and "_" allowed for hostnames that use them; never "," or ":",
  which separate fields in the scheduler's NOTIFY payloads;
- labels follow Kubernetes labels: at most 64, keys `[prefix/]name` with a
  DNS-subdomain prefix ≤ 253 and a name ≤ 63, values ≤ 256 characters;
- GPUs: at most 72 a node (an NVL72 rack seen as one node), NVML's UUID
  format, indexes 0..71 and unique, a model the catalogue knows, and memory
  no more than the model's datasheet figure plus MEMORY_TOLERANCE_PCT;
- health: the numbers NVML can give (°C, mW, %, MiB) in physical ranges.

Every message quotes a bad value through errors.quoted (≤ 64 characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from scheduler.domain.catalogue import CATALOGUE, GpuModel, resolve_model_name
from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.domain.residency import MAX_RESIDENCY_ENTRIES, ResidentModel

MAX_NODE_NAME = 253
MAX_HOSTNAME = 253
MAX_LABELS = 64
MAX_LABEL_PREFIX = 253
MAX_LABEL_NAME = 63
MAX_LABEL_VALUE = 256
MAX_GPUS_PER_NODE = 72
MAX_PCI_BUS_ID = 32

# NVML's memory total is at most the datasheet figure the catalogue keeps
# (GB x 1024 MiB): an H100 80GB reports 81559 MiB of 81920, an L4 23034 of
# 24576 (ECC takes its share), an A100 80GB exactly 81920. 2% above it leaves
# room for a SKU whose datasheet rounds down, and still refuses any claim to
# be the next size up (an L4 claiming 25 GiB is already 4% over).
MEMORY_TOLERANCE_PCT = 2

MAX_HEALTH_REASONS = 16
MAX_HEALTH_REASON = 256
MAX_RECENT_XIDS = 64
MAX_XID = 65535
MIN_TEMPERATURE_C = -40.0
MAX_TEMPERATURE_C = 200.0
MAX_POWER_MW = 5_000_000  # 5 kW; a B200 board draws 1 kW
MAX_RESIDENT_SIZE_BYTES = 2**50  # 1 PiB of weights: far past any model, below BIGINT

MAX_AGENT_VERSION = 64
MAX_RUNNING_IDS = 4096
MAX_ALLOCATION_ID = 32

_NODE_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?")
_HOSTNAME = re.compile(r"[!-~]+")  # printable ASCII, no spaces
_GPU_UUID = re.compile(
    r"GPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
# domain:bus:device.function; the bus may run past two digits because the
# simulated fleet numbers a GPU's bus 0x18 + 0x10 x index (scheduler/fleetfile.py).
_PCI_BUS_ID = re.compile(r"[0-9a-fA-F]{4,8}:[0-9a-fA-F]{2,4}:[0-9a-fA-F]{2}\.[0-7]")


@dataclass(frozen=True)
class GpuSpecInput:
    """One GPU as the agent discovered it through NVML."""

    uuid: str
    index: int
    model: str  # catalogue name once validated; the NVML name before
    memory_mib: int  # 0: not reported, the catalogue's figure is used
    mig_enabled: bool
    nvlink_peers: tuple[int, ...] = ()
    pci_bus_id: str = ""


@dataclass(frozen=True)
class GpuHealthReport:
    """One GPU's health as the agent's policy judged it, with the figures behind it."""

    uuid: str
    health: str  # healthy | degraded | unhealthy ("" for a value this scheduler does not know)
    reasons: tuple[str, ...] = ()
    temperature_c: float = 0.0
    power_mw: int = 0
    utilization_pct: int = 0
    memory_used_mib: int = 0
    recent_xids: tuple[int, ...] = ()


def max_memory_mib(model: GpuModel) -> int:
    """The most memory a GPU of this model may report."""
    return model.memory_mib + model.memory_mib * MEMORY_TOLERANCE_PCT // 100


_MAX_ANY_MEMORY_MIB = max(max_memory_mib(m) for m in CATALOGUE.values())


def validate_node_name(name: str) -> None:
    if not name or len(name) > MAX_NODE_NAME or not _NODE_NAME.fullmatch(name):
        raise InvalidArgument(
            f"node name {quoted(name)} must be 1..{MAX_NODE_NAME} letters, digits, "
            "'.', '-' or '_', starting and ending with a letter or digit"
        )


def validate_registration(
    name: str, hostname: str, labels: Mapping[str, str], gpus: Sequence[GpuSpecInput]
) -> list[GpuSpecInput]:
    """The GPUs with NVML names mapped to catalogue models and memory filled
    in; InvalidArgument for anything that cannot be right."""
    validate_node_name(name)
    _check_hostname(name, hostname)
    _check_labels(name, labels)
    if len(gpus) > MAX_GPUS_PER_NODE:
        raise InvalidArgument(
            f"node {name}: {len(gpus)} GPUs reported; a node holds at most {MAX_GPUS_PER_NODE}"
        )
    uuids = [g.uuid for g in gpus]
    indexes = [g.index for g in gpus]
    if len(set(uuids)) != len(uuids) or len(set(indexes)) != len(indexes):
        raise InvalidArgument(f"node {name}: GPU UUIDs and indexes must be unique")
    present = set(indexes)
    return [_resolve_gpu(name, gpu, present) for gpu in gpus]


def _check_hostname(node: str, hostname: str) -> None:
    if len(hostname) > MAX_HOSTNAME:
        raise InvalidArgument(
            f"node {node}: hostname {quoted(hostname)} is over {MAX_HOSTNAME} characters"
        )
    if hostname and not _HOSTNAME.fullmatch(hostname):
        raise InvalidArgument(
            f"node {node}: hostname {quoted(hostname)} must be printable ASCII without spaces"
        )


def _check_labels(node: str, labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"node {node}: {len(labels)} labels; at most {MAX_LABELS}")
    for key, value in labels.items():
        _check_label_key(node, key)
        if len(value) > MAX_LABEL_VALUE:
            raise InvalidArgument(
                f"node {node}: label {quoted(key)} has a value of {len(value)} characters; "
                f"at most {MAX_LABEL_VALUE}"
            )
        if not value.isprintable():
            raise InvalidArgument(
                f"node {node}: label {quoted(key)} value {quoted(value)} has control characters"
            )


def _check_label_key(node: str, key: str) -> None:
    prefix, slash, label = key.rpartition("/")
    problem = ""
    if slash and (
        not prefix or len(prefix) > MAX_LABEL_PREFIX or not _DNS_SUBDOMAIN.fullmatch(prefix)
    ):
        problem = f"its prefix must be a DNS subdomain of at most {MAX_LABEL_PREFIX} characters"
    elif not label or len(label) > MAX_LABEL_NAME or not _LABEL_NAME.fullmatch(label):
        problem = (
            f"its name must be 1..{MAX_LABEL_NAME} letters, digits, '.', '-' or '_', "
            "starting and ending with a letter or digit"
        )
    if problem:
        raise InvalidArgument(f"node {node}: label key {quoted(key)} is not valid: {problem}")


def _resolve_gpu(node: str, gpu: GpuSpecInput, indexes: Collection[int]) -> GpuSpecInput:
    if not 0 <= gpu.index < MAX_GPUS_PER_NODE:
        raise InvalidArgument(
            f"node {node}: GPU index {gpu.index} is outside 0..{MAX_GPUS_PER_NODE - 1}"
        )
    where = f"node {node}: GPU {gpu.index}"
    if not gpu.uuid:
        raise InvalidArgument(f"{where} has no UUID")
    check_gpu_uuid(where, gpu.uuid)
    model = resolve_model_name(gpu.model)
    if model is None:
        raise InvalidArgument(f"{where} model {quoted(gpu.model)} is not in the catalogue")
    if gpu.mig_enabled and not model.mig_capable:
        raise InvalidArgument(f"node {node}: {model.name} does not support MIG")
    limit = max_memory_mib(model)
    if gpu.memory_mib > limit:
        raise InvalidArgument(
            f"{where} ({model.name}) reports {gpu.memory_mib} MiB; the model has "
            f"{model.memory_mib} MiB (at most {limit} MiB accepted)"
        )
    _check_peers(where, gpu, indexes)
    if len(gpu.pci_bus_id) > MAX_PCI_BUS_ID or (
        gpu.pci_bus_id and not _PCI_BUS_ID.fullmatch(gpu.pci_bus_id)
    ):
        raise InvalidArgument(
            f"{where} PCI bus id {quoted(gpu.pci_bus_id)} is not of the form 00000000:18:00.0"
        )
    return GpuSpecInput(
        uuid=gpu.uuid,
        index=gpu.index,
        model=model.name,
        memory_mib=gpu.memory_mib or model.memory_mib,
        mig_enabled=gpu.mig_enabled,
        nvlink_peers=tuple(gpu.nvlink_peers),
        pci_bus_id=gpu.pci_bus_id,
    )


def check_gpu_uuid(where: str, uuid: str) -> None:
    if not _GPU_UUID.fullmatch(uuid):
        raise InvalidArgument(
            f"{where}: UUID {quoted(uuid)} is not NVML's form "
            "GPU-xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (hex)"
        )


def _check_peers(where: str, gpu: GpuSpecInput, indexes: Collection[int]) -> None:
    peers = list(gpu.nvlink_peers)
    if len(set(peers)) != len(peers):
        raise InvalidArgument(f"{where}: NVLink peers must be unique")
    if gpu.index in peers:
        raise InvalidArgument(f"{where} lists itself as an NVLink peer")
    strangers = sorted(set(peers) - set(indexes))
    if strangers:
        shown = ", ".join(str(p) for p in strangers[:8])
        raise InvalidArgument(f"{where}: NVLink peers {shown} are not GPUs of this node")


def validate_health(
    node: str, reports: Sequence[GpuHealthReport], memory_mib: Mapping[str, int] | None = None
) -> None:
    """InvalidArgument for a health report that cannot be right.

    memory_mib: each GPU's memory by UUID where the caller knows it (a used
    figure above the GPU's total is refused); otherwise the largest GPU in
    the catalogue bounds it.
    """
    if len(reports) > MAX_GPUS_PER_NODE:
        raise InvalidArgument(
            f"node {node}: {len(reports)} health reports; a node holds at most "
            f"{MAX_GPUS_PER_NODE} GPUs"
        )
    uuids = [r.uuid for r in reports]
    if len(set(uuids)) != len(uuids):
        raise InvalidArgument(f"node {node}: one health report per GPU UUID")
    known = memory_mib or {}
    for report in reports:
        _check_health(node, report, known.get(report.uuid))


def _check_health(node: str, report: GpuHealthReport, total_mib: int | None) -> None:
    where = f"node {node}: health of GPU {quoted(report.uuid)}"
    check_gpu_uuid(f"node {node}: health report", report.uuid)
    if len(report.reasons) > MAX_HEALTH_REASONS:
        raise InvalidArgument(
            f"{where} gives {len(report.reasons)} reasons; at most {MAX_HEALTH_REASONS}"
        )
    for reason in report.reasons:
        if len(reason) > MAX_HEALTH_REASON:
            raise InvalidArgument(
                f"{where}: reason {quoted(reason)} is over {MAX_HEALTH_REASON} characters"
            )
    temperature = report.temperature_c
    if not math.isfinite(temperature) or not (
        MIN_TEMPERATURE_C <= temperature <= MAX_TEMPERATURE_C
    ):
        raise InvalidArgument(
            f"{where}: temperature {temperature!r} °C is outside "
            f"{MIN_TEMPERATURE_C:g}..{MAX_TEMPERATURE_C:g}"
        )
    if not 0 <= report.power_mw <= MAX_POWER_MW:
        raise InvalidArgument(f"{where}: power {report.power_mw} mW is outside 0..{MAX_POWER_MW}")
    if not 0 <= report.utilization_pct <= 100:
        raise InvalidArgument(f"{where}: utilisation {report.utilization_pct}% is outside 0..100")
    limit = _MAX_ANY_MEMORY_MIB if total_mib is None else total_mib
    if not 0 <= report.memory_used_mib <= limit:
        raise InvalidArgument(
            f"{where}: {report.memory_used_mib} MiB used is more than the GPU's {limit} MiB"
        )
    if len(report.recent_xids) > MAX_RECENT_XIDS:
        raise InvalidArgument(
            f"{where}: {len(report.recent_xids)} recent XIDs; at most {MAX_RECENT_XIDS}"
        )
    if any(not 0 <= xid <= MAX_XID for xid in report.recent_xids):
        raise InvalidArgument(f"{where}: an XID is outside 0..{MAX_XID}")


def validate_residency_bounds(node: str, entries: Sequence[ResidentModel]) -> None:
    """Bounds domain.residency.validate_residency leaves to the caller: sizes
    the database can hold. (It checks the count, names, tiers and GPUs.)"""
    if len(entries) > MAX_RESIDENCY_ENTRIES:
        raise InvalidArgument(
            f"node {node}: {len(entries)} residency entries; at most {MAX_RESIDENCY_ENTRIES}"
        )
    for entry in entries:
        if not 0 <= entry.size_bytes <= MAX_RESIDENT_SIZE_BYTES:
            raise InvalidArgument(
                f"node {node}: {quoted(entry.model)} size {entry.size_bytes} bytes is outside "
                f"0..{MAX_RESIDENT_SIZE_BYTES}"
            )


def validate_hello_extras(node: str, agent_version: str, running_ids: Sequence[str]) -> None:
    """What else a hello carries: the agent's version (stored) and the
    allocations it runs (logged)."""
    if len(agent_version) > MAX_AGENT_VERSION or not agent_version.isprintable():
        raise InvalidArgument(
            f"node {node}: agent version {quoted(agent_version)} must be printable and at most "
            f"{MAX_AGENT_VERSION} characters"
        )
    if len(running_ids) > MAX_RUNNING_IDS:
        raise InvalidArgument(
            f"node {node}: {len(running_ids)} running allocations; at most {MAX_RUNNING_IDS}"
        )
    for allocation_id in running_ids:
        if len(allocation_id) > MAX_ALLOCATION_ID:
            raise InvalidArgument(
                f"node {node}: running allocation id {quoted(allocation_id)} is over "
                f"{MAX_ALLOCATION_ID} characters"
            )
