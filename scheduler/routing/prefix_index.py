"""An approximate per-replica index of cached prompt prefixes, fed by routing decisions.

Each replica's entry is an LRU of block hashes (scheduler/serving/kv_cache.py)
sized like that replica's KV cache: what the router sent there recently is
what the engine most likely still holds. It is approximate (other routers
and the engine's own evictions are not seen); exact engine KV events could
feed the same `insert` / `forget` calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from scheduler.serving.kv_cache import PrefixCache


class PrefixIndex:
    def __init__(self) -> None:
        self._caches: dict[str, PrefixCache] = {}

    def ensure(self, replica: str, capacity_blocks: int) -> None:
        """Track `replica` with an LRU of `capacity_blocks` (resized if it changed)."""
        cache = self._caches.get(replica)
        if cache is None:
            self._caches[replica] = PrefixCache(capacity_blocks)
        elif cache.capacity != capacity_blocks:
            cache.resize(capacity_blocks)

    def forget(self, replica: str) -> None:
        """Drop a replica (gone, or restarted with a cold cache)."""
        self._caches.pop(replica, None)

    def overlap(self, replica: str, blocks: Sequence[int]) -> int:
        cache = self._caches.get(replica)
        return cache.match(blocks) if cache is not None and blocks else 0

    def overlaps(self, replicas: Iterable[str], blocks: Sequence[int]) -> dict[str, int]:
        """Cached leading blocks per replica (only replicas with at least one)."""
        if not blocks:
            return {}
        first = blocks[0]
        found: dict[str, int] = {}
        for replica in replicas:
            cache = self._caches.get(replica)
            if cache is not None and first in cache:
                found[replica] = cache.match(blocks)
        return found

    def record(self, replica: str, blocks: Sequence[int]) -> None:
        """The prompt's blocks are (about to be) cached on `replica`."""
        cache = self._caches.get(replica)
        if cache is not None and blocks:
            cache.insert(blocks)
