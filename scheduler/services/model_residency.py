"""Use cases of model residency: agents reporting where models are warm, and
admins asking where each model is warm and what a cold start would cost."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine

from scheduler.domain.clock import Clock
from scheduler.domain.errors import NotFound
from scheduler.domain.llm_catalogue import canonical_model_name, model_size_bytes
from scheduler.domain.model_loading import (
    DEFAULT_BANDWIDTHS,
    HOST_RAM,
    LOCAL_DISK,
    REMOTE,
    LoadBandwidths,
)
from scheduler.domain.residency import ResidentModel, validate_residency
from scheduler.services.fleet import FleetService
from scheduler.store import allocations as allocation_store
from scheduler.store import residency as store
from scheduler.store.residency import ResidencyRecord


@dataclass(frozen=True)
class ModelPlacementInfo:
    node: str
    gpu_uuid: str
    gpu_index: int | None
    tier: str
    standby: bool


@dataclass(frozen=True)
class ModelInfo:
    model: str
    size_bytes: int  # 0: unknown
    placements: tuple[ModelPlacementInfo, ...] = ()
    # Seconds to load the weights from each tier: host_ram (PCIe Gen4),
    # host_ram_pcie5, local_disk, remote. Empty when the size is unknown.
    cold_start_seconds: dict[str, float] = field(default_factory=dict)


class ModelService:
    def __init__(
        self,
        engine: Engine,
        fleet: FleetService,
        clock: Clock,
        replica_id: str,
        bandwidths: LoadBandwidths = DEFAULT_BANDWIDTHS,
    ) -> None:
        self._engine = engine
        self._fleet = fleet
        self._clock = clock
        self._replica_id = replica_id
        self._bandwidths = bandwidths

    def report_residency(self, node: str, entries: Sequence[ResidentModel]) -> None:
        """Replace what the node holds warm with this full report."""
        with self._engine.begin() as conn:
            uuids = store.node_gpu_uuids(conn, node)
            clean = validate_residency(node, entries, uuids)
            store.replace_node_residency(conn, node, clean, self._clock.now())
            # Other replicas reload the node's residency with its GPUs.
            allocation_store.notify(conn, [f"fleet:{self._replica_id}:{node}"])
        self._fleet.fleet_changed([node])

    def list_models(self, model: str = "") -> list[ModelInfo]:
        """Every model some agent reports (or the one named, warm or not), by name."""
        wanted = canonical_model_name(model) if model else ""
        with self._engine.connect() as conn:
            records = store.list_residency(conn, wanted)
        by_model: dict[str, list[ResidencyRecord]] = {}
        for record in records:
            by_model.setdefault(record.model, []).append(record)
        if wanted and wanted not in by_model:
            if model_size_bytes(wanted) is None:
                raise NotFound(
                    f"model {model!r} is warm nowhere and not in the LLM catalogue "
                    "(see `gpupool models`)"
                )
            by_model[wanted] = []
        return [self._info(name, rows) for name, rows in sorted(by_model.items())]

    def _info(self, model: str, rows: list[ResidencyRecord]) -> ModelInfo:
        size = max((r.size_bytes for r in rows), default=0) or model_size_bytes(model) or 0
        seconds: dict[str, float] = {}
        if size:
            bw = self._bandwidths
            seconds = {
                HOST_RAM: size / (bw.pcie4_gbps * 1e9),
                "host_ram_pcie5": size / (bw.pcie5_gbps * 1e9),
                LOCAL_DISK: bw.seconds(size, LOCAL_DISK),
                REMOTE: bw.seconds(size, REMOTE),
            }
        placements = tuple(
            ModelPlacementInfo(r.node, r.gpu_uuid, r.gpu_index, r.tier, r.standby) for r in rows
        )
        return ModelInfo(model, size, placements, seconds)
