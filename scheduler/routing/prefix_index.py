"""An approximate per-replica index of cached prompt prefixes, fed by routing decisions.

Each replica has an LRU of block hashes sized like its KV cache: what the
router sent there recently is what the engine most likely still holds. It is
approximate (other routers and the engine's own evictions are not seen);
exact engine KV events could feed the same `record` / `forget` calls.

A second map, block -> the replicas holding it, lets one walk down the prompt's
chain find every replica's overlap at once (the set of holders only shrinks
along a chain), instead of one lookup walk per replica. The holder sets are
bitmasks (a Python int, one bit per replica): intersecting 64 replicas is one
integer AND, not a set built per block, and int -> int maps are not tracked by
the garbage collector, so a large index adds no collection pauses. With 64
replicas that all hold a shared system prompt, this is what keeps a decision in
microseconds. Memory is bounded by the replicas' cache sizes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence


class _ReplicaBlocks:
    __slots__ = ("bit", "blocks", "capacity")

    def __init__(self, capacity: int, bit: int) -> None:
        self.capacity = max(0, capacity)
        self.bit = bit
        self.blocks: OrderedDict[int, None] = OrderedDict()


class PrefixIndex:
    def __init__(self) -> None:
        self._replicas: dict[str, _ReplicaBlocks] = {}
        self._holders: dict[int, int] = {}  # block -> bitmask of the replicas holding it
        self._by_bit: dict[int, str] = {}  # bit -> replica
        self._bits: dict[str, int] = {}  # replica -> bit

    def ensure(self, replica: str, capacity_blocks: int) -> None:
        """Track `replica` with an LRU of `capacity_blocks` (resized if it changed)."""
        entry = self._replicas.get(replica)
        if entry is None:
            # The lowest free bit: masks stay as small as the number of replicas.
            bit = 1
            while bit in self._by_bit:
                bit <<= 1
            self._by_bit[bit] = replica
            self._bits[replica] = bit
            self._replicas[replica] = _ReplicaBlocks(capacity_blocks, bit)
        elif entry.capacity != capacity_blocks:
            entry.capacity = max(0, capacity_blocks)
            self._evict(entry)

    def forget(self, replica: str) -> None:
        """Drop a replica (gone, or restarted with a cold cache)."""
        entry = self._replicas.pop(replica, None)
        if entry is None:
            return
        for block in entry.blocks:
            self._drop_holder(block, entry.bit)
        del self._by_bit[entry.bit]
        del self._bits[replica]

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
        """Leading blocks held per replica of `replicas` (only replicas with at least one)."""
        if not blocks:
            return {}
        holders = self._holders
        alive = holders.get(blocks[0], 0)
        if not alive:
            return {}
        bits = self._bits
        wanted = 0
        for replica in replicas:
            wanted |= bits.get(replica, 0)
        alive &= wanted
        found: dict[str, int] = {}
        by_bit = self._by_bit
        depth = 1
        for block in blocks[1:]:
            if not alive:
                break
            following = alive & holders.get(block, 0)
            if following != alive:
                dropped = alive ^ following
                while dropped:
                    low = dropped & -dropped
                    found[by_bit[low]] = depth
                    dropped ^= low
                alive = following
            depth += 1
        while alive:
            low = alive & -alive
            found[by_bit[low]] = depth
            alive ^= low
        return found

    def record(self, replica: str, blocks: Sequence[int]) -> None:
        """The prompt's blocks are (about to be) cached on `replica`."""
        entry = self._replicas.get(replica)
        if entry is None or not blocks:
            return
        held = entry.blocks
        holders = self._holders
        bit = entry.bit
        for block in blocks:
            if block in held:
                held.move_to_end(block)
            else:
                held[block] = None
                holders[block] = holders.get(block, 0) | bit
        self._evict(entry)

    def _evict(self, entry: _ReplicaBlocks) -> None:
        held = entry.blocks
        while len(held) > entry.capacity:
            block, _ = held.popitem(last=False)
            self._drop_holder(block, entry.bit)

    def _drop_holder(self, block: int, bit: int) -> None:
        holding = self._holders.get(block)
        if holding is not None:
            holding &= ~bit
            if holding:
                self._holders[block] = holding
            else:
                del self._holders[block]
