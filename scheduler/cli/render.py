"""Pure rendering for the CLI: protos to cell strings, rich tables and JSON-able dicts.

Nothing here touches the network, so every column can be tested from
hand-built protos. Functions that show an age take `now` for the same reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from gpupool.v1 import scheduler_pb2, types_pb2

# (header or field name, text)
Cell = tuple[str, str]
Row = list[Cell]

MIB_PER_GIB = 1024
NONE = "-"
TIMES = "\N{MULTIPLICATION SIGN}"

# Colour by the label a state or health cell starts with.
_STYLES = {
    **dict.fromkeys(("running", "ready", "healthy"), "green"),
    **dict.fromkeys(("pending", "cordoned", "draining", "degraded"), "yellow"),
    **dict.fromkeys(("failed", "unreachable", "unhealthy"), "red"),
    **dict.fromkeys(("released", "drained"), "dim"),
    "placed": "cyan",
    "preempting": "magenta",
    "unschedulable": "bold red",
}


# --- scalar formatting -------------------------------------------------------


def _enum_label(wrapper: EnumTypeWrapper, value: int, prefix: str) -> str:
    try:
        name = wrapper.Name(value)
    except ValueError:
        # A newer server may send a value this CLI does not know yet.
        return f"unknown({value})"
    return name.removeprefix(prefix).lower().replace("_", "-")


def allocation_state_label(state: int) -> str:
    return _enum_label(types_pb2.AllocationState, state, "ALLOCATION_STATE_")


def node_state_label(state: int) -> str:
    return _enum_label(types_pb2.NodeState, state, "NODE_STATE_")


def health_label(health: int) -> str:
    return _enum_label(types_pb2.GpuHealth, health, "GPU_HEALTH_")


def workload_class_label(workload_class: int) -> str:
    if workload_class == types_pb2.WORKLOAD_CLASS_UNSPECIFIED:
        return NONE
    return _enum_label(types_pb2.WorkloadClass, workload_class, "WORKLOAD_CLASS_")


def is_set(ts: Timestamp) -> bool:
    return ts.seconds != 0 or ts.nanos != 0


def format_time(ts: Timestamp) -> str:
    """UTC, to the second: the same on every operator's machine."""
    if not is_set(ts):
        return NONE
    return ts.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_duration(seconds: int) -> str:
    """At most two units: "42s", "5m", "1h5m", "2d3h"."""
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(seconds // 3600, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def format_age(ts: Timestamp, now: datetime) -> str:
    if not is_set(ts):
        return "never"
    elapsed = (now - ts.ToDatetime(tzinfo=UTC)).total_seconds()
    # Clock skew between scheduler and operator can put a timestamp slightly ahead.
    return f"{format_duration(max(0, int(elapsed)))} ago"


def format_gib(mib: int) -> str:
    return f"{mib / MIB_PER_GIB:.1f} GiB"


def format_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={labels[key]}" for key in sorted(labels)) or NONE


def short_uuid(uuid: str, keep: int = 12) -> str:
    return uuid if len(uuid) <= keep else uuid[:keep] + "…"


# --- derived columns ---------------------------------------------------------


def describe_resources(allocation: types_pb2.Allocation) -> str:
    """The "what" column: N whole GPUs, milli-GPU + memory, or a MIG profile."""
    kind = allocation.WhichOneof("resources")
    if kind == "whole":
        text = f"{allocation.whole.count}{TIMES} whole"
        if allocation.HasField("layout"):
            text += f" ({describe_layout(allocation.layout)})"
        return text
    if kind == "fraction":
        fraction = allocation.fraction
        return f"{fraction.milli_gpu}m + {format_gib(fraction.memory_mib)}"
    if kind == "mig":
        return f"MIG {allocation.mig.profile}"
    return NONE


def describe_layout(layout: types_pb2.ParallelLayout) -> str:
    """ "tp=4 pp=2"; degrees of 1 are left out."""
    degrees = (("tp", layout.tp), ("pp", layout.pp), ("ep", layout.ep), ("cp", layout.cp))
    parts = [f"{name}={value}" for name, value in degrees if value > 1]
    if layout.replicas > 1:
        parts.append(f"replicas={layout.replicas}")
    return " ".join(parts) or "tp=1"


def describe_placement(bindings: Iterable[types_pb2.GpuBinding]) -> str:
    """The "where" column: "node-a:0,1 node-b:3", nodes in binding order."""
    by_node: dict[str, set[int]] = {}
    for binding in bindings:
        by_node.setdefault(binding.node, set()).add(binding.gpu_index)
    parts = [f"{node}:{','.join(str(i) for i in sorted(idx))}" for node, idx in by_node.items()]
    return " ".join(parts) or NONE


def first_pending_reason(allocation: types_pb2.Allocation) -> str:
    if allocation.state != types_pb2.ALLOCATION_STATE_PENDING:
        return ""
    if allocation.pending_reasons:
        first = allocation.pending_reasons[0]
        # The Unschedulable verdict's text already says so; other plugins are named.
        plugin = "" if first.plugin == "Unschedulable" else f"{first.plugin}: "
        reason = f"{plugin}{first.reason}"
    else:
        reason = allocation.message
    # Flag it once: the scheduler's own reason often already says "unschedulable".
    if allocation.unschedulable and "unschedulable" not in reason.lower():
        return f"unschedulable: {reason}" if reason else "unschedulable"
    return reason


def describe_node_gpus(node: types_pb2.Node) -> str:
    """Count times model, one term per model on a mixed node."""
    if node.gpus:
        models = Counter(gpu.model for gpu in node.gpus)
    elif len(node.gpu_models) == node.gpu_count:
        models = Counter(node.gpu_models)
    else:
        # gpu_models is the set of distinct models: counts per model are unknown.
        distinct = "/".join(sorted(set(node.gpu_models))) or "GPU"
        return f"{node.gpu_count}{TIMES} {distinct}"
    if not models:
        return "0"
    return " + ".join(f"{count}{TIMES} {model}" for model, count in sorted(models.items()))


def describe_health(gpu: types_pb2.Gpu) -> str:
    label = health_label(gpu.health)
    return f"{label} ({'; '.join(gpu.health_reasons)})" if gpu.health_reasons else label


def describe_mig_instance(instance: types_pb2.MigInstance) -> str:
    # The whole id, so it can be pasted into `gpupool allocation show`.
    owner = f"→{instance.allocation_id}" if instance.allocation_id else ""
    return f"{instance.profile}@{instance.start}{owner}"


def describe_mig(gpu: types_pb2.Gpu) -> str:
    """Slot map then instances: "33334444 3g.40gb@0→a-12, 3g.40gb@4→a-34"."""
    if not gpu.mig_enabled:
        return NONE
    instances = ", ".join(describe_mig_instance(i) for i in gpu.mig_instances)
    return " ".join(part for part in (gpu.mig_slot_map, instances) if part) or NONE


def describe_mig_profiles(model: types_pb2.GpuModel) -> str:
    return ", ".join(f"{p.name}{TIMES}{p.max_count}" for p in model.mig_profiles) or NONE


# --- rows and fields ---------------------------------------------------------

# A row is a list of (header, text) cells, so a header always sits next to its value.
# Tables take their headers from a row built from an empty proto, which works for no rows too.


def node_row(node: types_pb2.Node, now: datetime) -> Row:
    return [
        ("NAME", node.name),
        ("STATE", node_state_label(node.state)),
        ("GPUS", describe_node_gpus(node)),
        ("FREE", str(node.free_gpus)),
        ("ALLOCS", str(node.allocation_count)),
        ("HEARTBEAT", format_age(node.last_heartbeat_at, now)),
        ("LABELS", format_labels(node.labels)),
    ]


def gpu_row(gpu: types_pb2.Gpu) -> Row:
    return [
        ("NODE", gpu.node),
        ("IDX", str(gpu.index)),
        ("UUID", short_uuid(gpu.uuid)),
        ("MODEL", gpu.model),
        ("MEMORY", format_gib(gpu.memory_mib)),
        ("MODE", "MIG" if gpu.mig_enabled else "full"),
        ("HEALTH", describe_health(gpu)),
        ("MILLI USED/FREE", f"{gpu.used_milli}/{gpu.free_milli}"),
        ("MEM USED/FREE", f"{format_gib(gpu.used_memory_mib)}/{format_gib(gpu.free_memory_mib)}"),
        ("MIG", describe_mig(gpu)),
    ]


def allocation_row(allocation: types_pb2.Allocation, now: datetime) -> Row:
    return [
        ("ID", allocation.id),
        ("TENANT", allocation.tenant),
        ("REQUEST", allocation.request_id),
        ("STATE", allocation_state_label(allocation.state)),
        ("WHAT", describe_resources(allocation)),
        ("WHERE", describe_placement(allocation.bindings)),
        ("PRIORITY", allocation.priority_class or NONE),
        ("AGE", format_age(allocation.created_at, now)),
        ("REASON", first_pending_reason(allocation)),
    ]


def binding_row(binding: types_pb2.GpuBinding) -> Row:
    mig = NONE
    milli, memory = str(binding.milli_gpu), format_gib(binding.memory_mib)
    if binding.mig_profile:
        last = binding.mig_start + binding.mig_size - 1
        mig = f"{binding.mig_profile} slots {binding.mig_start}-{last}"
        # The instance's device: what CUDA_VISIBLE_DEVICES names (set once realised).
        mig += f" {binding.mig_device_uuid}" if binding.mig_device_uuid else " (not created yet)"
        # A MIG instance claims slices, not milli-GPU: its memory is the slices'.
        milli, memory = NONE, format_gib(binding.mig_memory_mib)
    return [
        ("RANK", str(binding.rank)),
        ("NODE", binding.node),
        ("GPU", str(binding.gpu_index)),
        ("UUID", short_uuid(binding.gpu_uuid)),
        ("MODEL", binding.gpu_model),
        ("MILLI", milli),
        ("MEMORY", memory),
        ("MIG", mig),
    ]


def event_row(event: types_pb2.AllocationEvent) -> Row:
    return [
        ("SEQ", str(event.seq)),
        ("TIME", format_time(event.at)),
        ("STATE", allocation_state_label(event.state)),
        ("MESSAGE", event.message),
    ]


# What a plugin's count counts: the candidates it turned away.
_NODE_PLUGINS = frozenset({"NodeSchedulable", "NodeReserved", "NodeResourcesFit", "WholeGpusFree"})
_FLEET_VERDICTS = frozenset({"Unschedulable", "GenerationAllowed"})


def rejected_count(reason: types_pb2.PendingReason) -> str:
    """ "12 GPUs", "3 nodes", "2 groups short"; "-" for a verdict on the whole fleet."""
    if reason.plugin in _FLEET_VERDICTS and reason.count == 0:
        return NONE
    if reason.plugin == "GangLayout":
        return f"{reason.count} group{'s' if reason.count != 1 else ''} short"
    unit = "node" if reason.plugin in _NODE_PLUGINS else "GPU"
    return f"{reason.count} {unit}{'s' if reason.count != 1 else ''}"


def reason_row(reason: types_pb2.PendingReason) -> Row:
    return [
        ("PLUGIN", reason.plugin),
        ("REJECTED", rejected_count(reason)),
        ("REASON", reason.reason),
    ]


def catalogue_row(model: types_pb2.GpuModel) -> Row:
    return [
        ("MODEL", model.name),
        ("GEN", model.generation),
        ("MEMORY", format_gib(model.memory_mib)),
        ("BANDWIDTH", f"{model.memory_bandwidth_gbps} GB/s"),
        ("BF16 TFLOP/S", str(model.bf16_tflops)),
        ("NVLINK", f"{model.nvlink_gbps} GB/s" if model.nvlink_gbps else NONE),
        ("WEIGHT", f"{model.throughput_weight:.2f}"),
        ("MIG PROFILES", describe_mig_profiles(model)),
    ]


def node_fields(node: types_pb2.Node, now: datetime) -> list[Cell]:
    heartbeat = format_time(node.last_heartbeat_at)
    return [
        ("Name", node.name),
        ("Hostname", node.hostname or NONE),
        ("State", node_state_label(node.state)),
        ("GPUs", describe_node_gpus(node)),
        ("Free GPUs", str(node.free_gpus)),
        ("Allocations", str(node.allocation_count)),
        ("Labels", format_labels(node.labels)),
        ("Last heartbeat", f"{heartbeat} ({format_age(node.last_heartbeat_at, now)})"),
        ("Registered", format_time(node.registered_at)),
    ]


def allocation_fields(allocation: types_pb2.Allocation, now: datetime) -> list[Cell]:
    created = format_time(allocation.created_at)
    fields = [
        ("ID", allocation.id),
        ("Tenant", allocation.tenant),
        ("Request ID", allocation.request_id),
        ("State", allocation_state_label(allocation.state)),
        ("Resources", describe_resources(allocation)),
        ("GPU models", ", ".join(allocation.gpu_models) or "any"),
        ("Priority", allocation.priority_class or NONE),
        ("Workload class", workload_class_label(allocation.workload_class)),
        ("Model", allocation.model or NONE),
        ("Labels", format_labels(allocation.labels)),
        ("Where", describe_placement(allocation.bindings)),
        ("Created", f"{created} ({format_age(allocation.created_at, now)})"),
        ("Updated", format_time(allocation.updated_at)),
    ]
    if allocation.HasField("layout_choice"):
        fields.append(("Layout choice", "\n".join(allocation.layout_choice.explanation)))
    if allocation.message:
        fields.append(("Message", allocation.message))
    if allocation.HasField("worker"):
        args = " ".join(f"{k}={v}" for k, v in sorted(allocation.worker.args.items()))
        fields.append(("Worker", f"{allocation.worker.template} {args}".strip()))
    if allocation.rendezvous.master_port:
        where = f"{allocation.rendezvous.master_addr}:{allocation.rendezvous.master_port}"
        fields.append(("Rendezvous", where))
    return fields


def worker_state_label(state: int) -> str:
    return _enum_label(types_pb2.WorkerState, state, "WORKER_STATE_")


_ENDED_WORKER_STATES = frozenset(
    {types_pb2.WORKER_STATE_EXITED, types_pb2.WORKER_STATE_FAILED, types_pb2.WORKER_STATE_STOPPED}
)


def worker_row(worker: types_pb2.WorkerStatus) -> Row:
    return [
        ("RANK", str(worker.rank)),
        ("NODE", worker.node),
        ("STATE", worker_state_label(worker.state)),
        ("PID", str(worker.pid or NONE)),
        ("RESTARTS", str(worker.restarts)),
        # An exit code only once the process has ended (a live rank has none yet).
        ("EXIT", str(worker.exit_code) if worker.state in _ENDED_WORKER_STATES else NONE),
        ("REASON", worker.reason or NONE),
    ]


def node_action_line(node: types_pb2.Node) -> str:
    line = f"node {node.name}: {node_state_label(node.state)}"
    if node.state == types_pb2.NODE_STATE_DRAINING and node.allocation_count:
        line += f" ({node.allocation_count} allocations still bound)"
    return line


def allocation_action_line(allocation: types_pb2.Allocation) -> str:
    return f"allocation {allocation.id}: {allocation_state_label(allocation.state)}"


def watch_line(update: scheduler_pb2.WatchAllocationResponse) -> str:
    """One update: time, state, where, message.

    The first update is the current allocation and may carry no event, so the
    allocation's own timestamps and pending reason stand in for it.
    """
    allocation = update.allocation
    has_event = update.HasField("event")
    times = (update.event.at, allocation.updated_at, allocation.created_at)
    at = next((t for t in times if is_set(t)), allocation.created_at)
    state = update.event.state if has_event else allocation.state
    message = (
        (update.event.message if has_event else "")
        or allocation.message
        or first_pending_reason(allocation)
    )
    where = describe_placement(allocation.bindings)
    return f"{format_time(at)}  {allocation_state_label(state):<10}  {where}  {message}".rstrip()


# --- JSON --------------------------------------------------------------------


_INT64_TYPES = frozenset(
    {
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    }
)


def _enum_prefix(enum: Any) -> str:
    """NodeState -> "NODE_STATE_": the prefix every value name carries."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def _plain_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM and isinstance(value, str):
        return value.removeprefix(_enum_prefix(field.enum_type)).lower().replace("_", "-")
    if field.type in _INT64_TYPES and isinstance(value, str):
        return int(value)
    if field.type == FieldDescriptor.TYPE_MESSAGE and isinstance(value, dict):
        return _plain(field.message_type, value)
    return value


def _plain(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    """protobuf's JSON mapping, made to read like the tables: enum values as
    the tables show them ("ready", not "NODE_STATE_READY"), 64-bit integers
    as numbers like every other integer (the JSON mapping quotes them)."""
    if descriptor.full_name.startswith("google.protobuf."):
        return data  # Timestamp and friends keep their own JSON form
    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            data[field.name] = {k: _plain_value(value_field, v) for k, v in value.items()}
        elif isinstance(value, list):
            data[field.name] = [_plain_value(field, v) for v in value]
        else:
            data[field.name] = _plain_value(field, value)
    return data


def to_dict(message: Message) -> dict[str, Any]:
    # Zero values are kept so scripts can rely on keys such as free_gpus: 0.
    data = json_format.MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return _plain(message.DESCRIPTOR, data)


def to_dicts(messages: Iterable[Message]) -> list[dict[str, Any]]:
    return [to_dict(message) for message in messages]


# --- rich --------------------------------------------------------------------


def _cell(value: str, styled: bool) -> Text:
    # Text, not markup: labels and messages may contain "[...]".
    style = _STYLES.get(value.split(" ", 1)[0].rstrip(":"), "") if styled else ""
    return Text(value, style=style)


def make_table(
    template: Row,
    rows: Iterable[Row],
    *,
    title: str | None = None,
    styled: Sequence[str] = ("STATE", "HEALTH", "REASON"),
) -> Table:
    """A table with `template`'s headers; cells under a `styled` header get a colour."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for header, _ in template:
        # Fold rather than cut with "…": a cut id cannot be pasted into another command.
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(text, header in styled) for header, text in row))
    return table


def fields_table(fields: Iterable[Cell]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for name, value in fields:
        grid.add_row(Text(name), _cell(value, name == "State"))
    return grid


def nodes_table(nodes: Iterable[types_pb2.Node], now: datetime) -> Table:
    return make_table(node_row(types_pb2.Node(), now), (node_row(n, now) for n in nodes))


def gpus_table(gpus: Iterable[types_pb2.Gpu], title: str | None = None) -> Table:
    return make_table(gpu_row(types_pb2.Gpu()), (gpu_row(g) for g in gpus), title=title)


def allocations_table(allocations: Iterable[types_pb2.Allocation], now: datetime) -> Table:
    template = allocation_row(types_pb2.Allocation(), now)
    return make_table(template, (allocation_row(a, now) for a in allocations))


def catalogue_table(models: Iterable[types_pb2.GpuModel]) -> Table:
    return make_table(catalogue_row(types_pb2.GpuModel()), (catalogue_row(m) for m in models))


def topology_lines(gpus: Iterable[types_pb2.Gpu]) -> list[str]:
    """One line per GPU: its PCI bus id and the GPUs it reaches over NVLink."""
    lines = []
    for gpu in gpus:
        peers = ",".join(str(p) for p in sorted(gpu.nvlink_peers)) or "none (PCIe only)"
        lines.append(f"GPU {gpu.index}  {gpu.pci_bus_id or NONE}  NVLink peers: {peers}")
    return lines


def node_view(
    node: types_pb2.Node, now: datetime, allocations: Sequence[types_pb2.Allocation] = ()
) -> RenderableType:
    parts: list[RenderableType] = [fields_table(node_fields(node, now))]
    if node.gpus:
        parts += [Text(), gpus_table(node.gpus, title="GPUs")]
        parts += [
            Text(),
            Text("Topology", style="bold"),
            Text("\n".join(topology_lines(node.gpus))),
        ]
    if allocations:
        parts += [Text(), Text("Allocations", style="bold"), allocations_table(allocations, now)]
    return Group(*parts)


def allocation_view(allocation: types_pb2.Allocation, now: datetime) -> RenderableType:
    parts: list[RenderableType] = []
    if allocation.unschedulable:
        # First and loud: waiting will not help, the request must change.
        banner = "UNSCHEDULABLE: no GPU in the fleet can ever hold this request"
        parts.append(Text(banner, style="bold red"))
    parts.append(fields_table(allocation_fields(allocation, now)))
    sections = (
        ("Bindings", [binding_row(b) for b in allocation.bindings]),
        ("Workers", [worker_row(w) for w in allocation.workers]),
        ("Pending reasons", [reason_row(r) for r in allocation.pending_reasons]),
        ("History", [event_row(e) for e in allocation.events]),
    )
    for title, rows in sections:
        if rows:
            parts += [Text(), make_table(rows[0], rows, title=title)]
    return Group(*parts)
