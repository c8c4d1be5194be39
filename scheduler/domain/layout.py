"""Parallel layouts of an inference gang: TP, PP, EP, CP and data-parallel replicas.

One GPU per rank; world size = tp × cp × pp × replicas. Ranks are numbered
tp fastest, then cp, then pp, then replica (Megatron-LM's order), so
rank = tp_rank + tp·(cp_rank + cp·(pp_rank + pp·replica)).

An EP group is `ep` consecutive ranks of one pipeline stage: with ep > tp it
spans several TP groups (vLLM's expert parallelism over TP × DP). The unit
that must sit in one NVLink domain is therefore max(tp, ep) consecutive ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.domain.errors import InvalidArgument

# Bounds that catch typos, not real limits: the largest public deployments
# run a few thousand GPUs per model instance.
MAX_DEGREE = 1024
MAX_WORLD_SIZE = 4096


@dataclass(frozen=True)
class ParallelLayout:
    tp: int = 1
    pp: int = 1
    ep: int = 1
    cp: int = 1
    replicas: int = 1

    @property
    def world_size(self) -> int:
        return self.tp * self.cp * self.pp * self.replicas

    @property
    def stage_size(self) -> int:
        """Ranks in one pipeline stage of one replica."""
        return self.tp * self.cp

    @property
    def replica_size(self) -> int:
        return self.stage_size * self.pp

    @property
    def domain_unit(self) -> int:
        """Consecutive ranks that must share one NVLink domain: a TP group, or an EP group."""
        return max(self.tp, self.ep)

    def validate(self) -> None:
        """InvalidArgument naming the first rule the layout breaks."""
        for name in ("tp", "pp", "ep", "cp", "replicas"):
            value = getattr(self, name)
            if not 1 <= value <= MAX_DEGREE:
                raise InvalidArgument(f"layout.{name} must be 1..{MAX_DEGREE}, got {value}")
        if self.world_size > MAX_WORLD_SIZE:
            raise InvalidArgument(
                f"layout world size tp×cp×pp×replicas = {self.world_size} exceeds {MAX_WORLD_SIZE}"
            )
        if self.ep > 1:
            if self.ep % self.tp and self.tp % self.ep:
                raise InvalidArgument(
                    f"layout.ep ({self.ep}) must divide or be a multiple of layout.tp ({self.tp})"
                )
            if self.stage_size % self.ep:
                raise InvalidArgument(
                    f"layout.ep ({self.ep}) must divide the ranks of one stage, "
                    f"tp×cp = {self.stage_size}"
                )

    def coordinates(self, rank: int) -> dict[str, int]:
        """This rank's place in each parallel dimension."""
        if not 0 <= rank < self.world_size:
            raise ValueError(f"rank {rank} outside world size {self.world_size}")
        tp_rank, rest = rank % self.tp, rank // self.tp
        cp_rank, rest = rest % self.cp, rest // self.cp
        pp_rank, replica = rest % self.pp, rest // self.pp
        return {
            "tp_rank": tp_rank,
            "cp_rank": cp_rank,
            "pp_rank": pp_rank,
            "ep_rank": (rank % self.stage_size) % self.ep,
            "replica": replica,
        }

    def as_dict(self) -> dict[str, int]:
        names = ("tp", "pp", "ep", "cp", "replicas")
        return {name: getattr(self, name) for name in names}

    def describe(self) -> str:
        parts = [f"{name}={value}" for name, value in self.as_dict().items() if value > 1]
        return " ".join(parts) or "tp=1"


def layout_from_degrees(tp: int, pp: int, ep: int, cp: int, replicas: int) -> ParallelLayout:
    """From wire values, where 0 means 1."""
    return ParallelLayout(tp or 1, pp or 1, ep or 1, cp or 1, replicas or 1)
