"""An approximate per-replica index of cached prompt prefixes, fed by routing decisions.

Each replica has an LRU of block hashes sized like its KV cache: what the
router sent there recently is what the engine most likely still holds. It is
approximate (other routers and the engine's own evictions are not seen);
exact engine KV events could feed the same `record` / `forget` calls.

A second map, block -> replicas holding it, lets one walk down the prompt's
chain find every replica's overlap at once (the set of holders only shrinks
along a chain), instead of one lookup walk per replica: with 64 replicas that
all hold a shared system prompt, this is what keeps a decision in microseconds.
Memory is bounded by the replicas' cache sizes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence


class _ReplicaBlocks:
    __slots__ = ("blocks", "capacity")

    def __init__(self, capacity: int) -> None:
        self.capacity = max(0, capacity)
        self.blocks: OrderedDict[int, None] = OrderedDict()


class PrefixIndex:
    def __init__(self) -> None:
        self._replicas: dict[str, _ReplicaBlocks] = {}
        self._holders: dict[int, set[str]] = {}

    def ensure(self, replica: str, capacity_blocks: int) -> None:
        """Track `replica` with an LRU of `capacity_blocks` (resized if it changed)."""
        entry = self._replicas.get(replica)
        if entry is None:
            self._replicas[replica] = _ReplicaBlocks(capacity_blocks)
        elif entry.capacity != capacity_blocks:
            entry.capacity = max(0, capacity_blocks)
            self._evict(replica, entry)

    def forget(self, replica: str) -> None:
        """Drop a replica (gone, or restarted with a cold cache)."""
        entry = self._replicas.pop(replica, None)
        if entry is None:
            return
        for block in entry.blocks:
            self._drop_holder(block, replica)

    def overlap(self, replica: str, blocks: Sequence[int]) -> int:
        """Leading blocks of `blocks` that `replica` holds."""
        entry = self._replicas.get(replica)
        if entry is None:
            return 0
        held = entry.blocks
        n = 0
        for block in blocks:
            if block not in held:
                break
            n += 1
        return n

    def overlaps(self, replicas: Iterable[str], blocks: Sequence[int]) -> dict[str, int]:
        """Leading blocks held per replica (only replicas with at least one)."""
        if not blocks:
            return {}
        holders = self._holders
        first = holders.get(blocks[0])
        if not first:
            return {}
        alive = first.intersection(replicas)
        found: dict[str, int] = {}
        depth = 1
        for block in blocks[1:]:
            if not alive:
                break
            holding = holders.get(block)
            following = alive & holding if holding else set()
            if len(following) < len(alive):
                for replica in alive - following:
                    found[replica] = depth
            alive = following
            depth += 1
        for replica in alive:
            found[replica] = depth
        return found

    def record(self, replica: str, blocks: Sequence[int]) -> None:
        """The prompt's blocks are (about to be) cached on `replica`."""
        entry = self._replicas.get(replica)
        if entry is None or not blocks:
            return
        held = entry.blocks
        holders = self._holders
        for block in blocks:
            if block in held:
                held.move_to_end(block)
            else:
                held[block] = None
                holding = holders.get(block)
                if holding is None:
                    holders[block] = {replica}
                else:
                    holding.add(replica)
        self._evict(replica, entry)

    def _evict(self, replica: str, entry: _ReplicaBlocks) -> None:
        held = entry.blocks
        while len(held) > entry.capacity:
            block, _ = held.popitem(last=False)
            self._drop_holder(block, replica)

    def _drop_holder(self, block: int, replica: str) -> None:
        holding = self._holders.get(block)
        if holding is not None:
            holding.discard(replica)
            if not holding:
                del self._holders[block]
