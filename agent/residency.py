"""What the agent reports about model residency: which models are warm where.

NVML cannot tell which model a process has loaded, so residency comes from
a source that knows:

- simulated nodes: the fleet file's `models:` entries (ResidencyFromFleetFile),
  plus the models of the allocations the node runs (on their GPUs, serving)
  and, once such an allocation is released, the model stays in host RAM
  (page cache) on the node — ResidencyTracker(track_allocations=True);
- real nodes: a JSON file that the inference workers (or operators)
  maintain, by default <state_dir>/residency.json (ResidencyFromJsonFile):

      {"models": [
        {"model": "llama-3.1-70b", "tier": "gpu", "gpus": [0, 1], "standby": true},
        {"model": "meta-llama/Llama-3.1-8B-Instruct", "tier": "host_ram",
         "size_bytes": 16060000000},
        {"model": "qwen2.5-72b", "tier": "local_disk"}
      ]}

  "gpus" are GPU indexes (or give "gpu_uuids"); "tier" defaults to "gpu"
  when GPUs are named; "standby" means loaded and not serving; "size_bytes"
  is optional (the scheduler's LLM catalogue fills it in). A missing file
  means nothing is warm; a malformed one keeps the last good report.

The agent sends the full set in its hello and, only when it changed, in a
heartbeat with residency_reported=true.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from scheduler.domain.residency import ResidentModel
from scheduler.fleetfile import SimulatedNode

log = logging.getLogger(__name__)
_TIERS = ("gpu", "host_ram", "local_disk")


class ResidencySource(Protocol):
    def read(self, uuid_by_index: Mapping[int, str]) -> list[ResidentModel]: ...


class ResidencyFromFleetFile:
    """A simulated node's models: fixed for the life of the agent."""

    def __init__(self, node: SimulatedNode) -> None:
        uuids = {gpu.index: gpu.uuid for gpu in node.gpus}
        entries: list[ResidentModel] = []
        for spec in node.models:
            if spec.tier == "gpu":
                entries += [
                    ResidentModel(spec.model, "gpu", uuids[i], spec.standby, spec.size_bytes)
                    for i in spec.gpus
                ]
            else:
                entries.append(ResidentModel(spec.model, spec.tier, size_bytes=spec.size_bytes))
        self._entries = entries

    def read(self, uuid_by_index: Mapping[int, str]) -> list[ResidentModel]:
        return list(self._entries)


class ResidencyFromJsonFile:
    """Residency as the workers on a real host write it (format above)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of the last parse
        self._last: list[ResidentModel] = []

    def read(self, uuid_by_index: Mapping[int, str]) -> list[ResidentModel]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._last = None, []
            return []
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return list(self._last)  # unchanged: no need to parse it every heartbeat
        try:
            document = json.loads(self.path.read_text())
            self._last = parse_residency_document(document, uuid_by_index)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: keeping the last residency report: %s", self.path, exc)
        self._stamp = stamp
        return list(self._last)


def parse_residency_document(
    document: Any, uuid_by_index: Mapping[int, str]
) -> list[ResidentModel]:
    """The entries of a residency.json document; ValueError names what is wrong."""
    if not isinstance(document, dict) or not isinstance(document.get("models", []), list):
        raise ValueError('expected {"models": [...]}')
    entries: list[ResidentModel] = []
    for spec in document.get("models", []):
        model = str(spec["model"])
        uuids = [str(u) for u in spec.get("gpu_uuids", [])]
        for index in spec.get("gpus", []):
            if int(index) not in uuid_by_index:
                raise ValueError(f"{model}: no GPU with index {index} on this node")
            uuids.append(uuid_by_index[int(index)])
        tier = str(spec.get("tier", "gpu" if uuids else ""))
        if tier not in _TIERS:
            raise ValueError(f"{model}: tier must be one of {', '.join(_TIERS)}")
        size = int(spec.get("size_bytes", 0))
        standby = bool(spec.get("standby", False))
        if tier == "gpu":
            if not uuids:
                raise ValueError(f"{model}: the gpu tier needs gpus or gpu_uuids")
            entries += [ResidentModel(model, tier, u, standby, size) for u in uuids]
        else:
            entries.append(ResidentModel(model, tier, size_bytes=size))
    return entries


class ResidencyTracker:
    """The node's current residency, and whether it changed since last sent."""

    def __init__(self, source: ResidencySource, track_allocations: bool) -> None:
        self._source = source
        self._track = track_allocations
        self._running: dict[str, tuple[str, tuple[str, ...]]] = {}  # id -> (model, GPU uuids)
        self._page_cache: set[str] = set()  # models of released allocations
        self._sent: list[ResidentModel] | None = None

    def observe_allocations(self, running: Mapping[str, tuple[str, Sequence[str]]]) -> None:
        """The allocations the node runs now: id -> (model, GPU uuids of its bindings)."""
        if not self._track:
            return
        for allocation_id, (model, _) in self._running.items():
            if allocation_id not in running and model:
                self._page_cache.add(model)  # the weights stay in the page cache
        self._running = {i: (m, tuple(u)) for i, (m, u) in running.items() if m}

    def current(self, uuid_by_index: Mapping[int, str]) -> list[ResidentModel]:
        entries = self._source.read(uuid_by_index)
        for model, uuids in self._running.values():
            entries += [ResidentModel(model, "gpu", uuid) for uuid in uuids]
        entries += [ResidentModel(model, "host_ram") for model in sorted(self._page_cache)]
        return _unique(entries)

    def for_hello(self, uuid_by_index: Mapping[int, str]) -> list[ResidentModel]:
        """The full set (a hello always carries it); remembered as sent."""
        self._sent = self.current(uuid_by_index)
        return list(self._sent)

    def changed(self, uuid_by_index: Mapping[int, str]) -> list[ResidentModel] | None:
        """The full set if it differs from what was last sent, else None."""
        entries = self.current(uuid_by_index)
        if entries == self._sent:
            return None
        self._sent = entries
        return list(entries)


def _unique(entries: Iterable[ResidentModel]) -> list[ResidentModel]:
    """Sorted and without repeats, so that equal sets compare equal."""
    return sorted(set(entries), key=lambda e: (e.model, e.tier, e.gpu_uuid, e.standby))
