"""`gpupool models [MODEL]`: where each model is warm and what a cold start costs."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

import click
from rich.table import Table

from gpupool.v1 import admin_pb2, types_pb2
from scheduler.cli.admin_commands import CliContext, pass_state

_TIER_LABELS = {
    types_pb2.RESIDENCY_TIER_GPU: "GPU",
    types_pb2.RESIDENCY_TIER_HOST_RAM: "host RAM",
    types_pb2.RESIDENCY_TIER_LOCAL_DISK: "local disk",
}
# Cold start columns, in the order a load gets slower.
_COLD_START = (
    ("host_ram_pcie5", "HOST RAM PCIE5"),
    ("host_ram", "HOST RAM PCIE4"),
    ("local_disk", "LOCAL DISK"),
    ("remote", "REMOTE"),
)


def format_size(size_bytes: int) -> str:
    return f"{size_bytes / 1e9:.1f} GB" if size_bytes else "unknown"


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{seconds / 60:.1f}min"


def describe_placements(
    placements: Iterable[admin_pb2.ModelPlacement], gpu_indexes: Mapping[str, int]
) -> str:
    """One line per node and tier: "h200: GPU 0,1 standby", "h200: host RAM"."""
    gpus: dict[tuple[str, bool], list[str]] = defaultdict(list)
    lines: list[str] = []
    for p in placements:
        if p.tier == types_pb2.RESIDENCY_TIER_GPU:
            index = gpu_indexes.get(p.gpu_uuid)
            gpus[(p.node, p.standby)].append(str(index) if index is not None else p.gpu_uuid)
        else:
            lines.append(f"{p.node}: {_TIER_LABELS.get(p.tier, '?')}")
    for (node, standby), indexes in gpus.items():
        lines.append(f"{node}: GPU {','.join(indexes)} {'standby' if standby else 'serving'}")
    return "\n".join(sorted(lines)) or "nowhere"


def models_table(models: Iterable[admin_pb2.ModelInfo], gpu_indexes: Mapping[str, int]) -> Table:
    table = Table(title="Where models are warm; cold start = weights ÷ tier bandwidth")
    for header in ("MODEL", "SIZE", "WARM ON", *(label for _, label in _COLD_START)):
        table.add_column(header, overflow="fold")
    for info in models:
        seconds = info.cold_start_seconds
        table.add_row(
            info.model,
            format_size(info.size_bytes),
            describe_placements(info.placements, gpu_indexes),
            *(format_seconds(seconds.get(key)) for key, _ in _COLD_START),
        )
    return table


@click.command()
@click.argument("model", required=False, default="")
@pass_state
def models(state: CliContext, model: str) -> None:
    """Where each model is warm (node, GPU, tier, standby) and its cold start per tier.

    MODEL may be a catalogue name (llama-3.1-70b) or a Hugging Face id.
    """
    client = state.client()
    found = client.list_models(model)
    if state.json:
        state.show(found, lambda: models_table(found, {}))
        return
    indexes = {gpu.uuid: gpu.index for gpu in client.list_gpus()}
    state.show(found, lambda: models_table(found, indexes))
