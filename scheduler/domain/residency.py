"""Model residency as agents report it: which models are warm where on a node.

Names are made canonical (llm_catalogue.canonical_model_name) on the way in,
so a report of "meta-llama/Llama-3.1-8B-Instruct" and a request for
"llama-3.1-8b" meet.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from scheduler.domain.errors import InvalidArgument, quoted
from scheduler.domain.llm_catalogue import canonical_model_name
from scheduler.domain.model_loading import GPU, RESIDENCY_TIERS

MAX_RESIDENCY_ENTRIES = 1024
MAX_MODEL_NAME_LENGTH = 256


@dataclass(frozen=True)
class ResidentModel:
    model: str
    tier: str  # gpu | host_ram | local_disk
    gpu_uuid: str = ""  # GPU tier only
    standby: bool = False  # GPU tier only: loaded, not serving
    size_bytes: int = 0  # 0: unknown


def validate_residency(
    node: str, entries: Iterable[ResidentModel], gpu_uuids: Collection[str]
) -> list[ResidentModel]:
    """Canonical, de-duplicated entries; InvalidArgument for a report that cannot be right.

    The same model twice on one GPU (or tier) is one entry: standby only if
    every report of it says standby, since a serving copy cannot be handed over.
    """
    merged: dict[tuple[str, str, str], ResidentModel] = {}
    for entry in entries:
        if len(merged) >= MAX_RESIDENCY_ENTRIES:
            raise InvalidArgument(
                f"node {node}: more than {MAX_RESIDENCY_ENTRIES} residency entries"
            )
        if not entry.model or len(entry.model) > MAX_MODEL_NAME_LENGTH:
            raise InvalidArgument(
                f"node {node}: a residency model name must be 1..{MAX_MODEL_NAME_LENGTH} characters"
            )
        if entry.tier not in RESIDENCY_TIERS:
            raise InvalidArgument(
                f"node {node}: residency tier of {entry.model} must be one of "
                f"{', '.join(RESIDENCY_TIERS)}"
            )
        on_gpu = entry.tier == GPU
        if on_gpu and entry.gpu_uuid not in gpu_uuids:
            raise InvalidArgument(
                f"node {node}: {entry.model} is reported on GPU {quoted(entry.gpu_uuid)}, "
                "which the node did not register"
            )
        model = canonical_model_name(entry.model)
        clean = ResidentModel(
            model=model,
            tier=entry.tier,
            gpu_uuid=entry.gpu_uuid if on_gpu else "",
            standby=entry.standby and on_gpu,
            size_bytes=max(0, entry.size_bytes),
        )
        key = (model, clean.tier, clean.gpu_uuid)
        previous = merged.get(key)
        if previous is not None:
            clean = ResidentModel(
                model,
                clean.tier,
                clean.gpu_uuid,
                clean.standby and previous.standby,
                max(clean.size_bytes, previous.size_bytes),
            )
        merged[key] = clean
    return sorted(merged.values(), key=lambda r: (r.model, r.tier, r.gpu_uuid))
