"""KV-cache blocks, prefix hashing and batch admission shared by every engine model.

The simulated engine (scheduler/serving/engine_sim) and the router's replay
(`gpupool route-sim`) both use these, so a replay caches and batches exactly
as the live simulated engine does:

- A prompt is cut into blocks of `block_tokens` tokens; each full block gets
  a hash chained on the previous block's hash (vLLM's automatic prefix
  caching), so equal hashes at the same position mean an equal prefix.
  Traces such as Mooncake's ship the chain ready made (`hash_ids`).
- `PrefixCache` keeps the hashes of blocks whose KV stays resident after
  their request finished, least recently used first out, within a capacity in
  blocks. A new request reuses the longest run of its chain from the start
  that is cached (a block's hash stands for its whole prefix, so the match
  stops at the first miss).
- `BatchLimits.admits` is the admission rule of a continuous-batching engine:
  at most `max_num_seqs` sequences run, and a new one starts only when the KV
  cache has room for its prompt and output blocks (free blocks first, then
  evicting cached ones). Requests wait in arrival order (FIFO).

Nothing here grows with history: the cache is bounded by its capacity.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A rough tokens-per-character figure for English text and code when no
# tokenizer is at hand (OpenAI's rule of thumb: ~4 characters per token).
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """A fast token count estimate: one token per 4 characters, at least 1 for text."""
    if not text:
        return 0
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


def block_hashes(text: str, block_tokens: int, limit: int | None = None) -> list[int]:
    """The chained hashes of the full blocks of `text` (block = block_tokens × 4 chars).

    Only full blocks are hashed, as engines cache only full blocks. `limit`
    caps the number of blocks hashed (the router only needs the head).
    """
    size = block_tokens * CHARS_PER_TOKEN
    count = len(text) // size
    if limit is not None:
        count = min(count, limit)
    hashes: list[int] = []
    previous = b""
    for i in range(count):
        # Character offsets on the text, so one block is the same whatever the encoding.
        chunk = text[i * size : (i + 1) * size].encode("utf-8", "surrogatepass")
        digest = hashlib.blake2b(previous + chunk, digest_size=8).digest()
        # 63 bits: a hash fits a signed 64-bit integer (protobuf, PostgreSQL).
        hashes.append(int.from_bytes(digest, "big") >> 1)
        previous = digest
    return hashes


class PrefixCache:
    """An LRU set of cached block hashes with a capacity in blocks."""

    __slots__ = ("_blocks", "capacity")

    def __init__(self, capacity_blocks: int) -> None:
        self.capacity = max(0, capacity_blocks)
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block: int) -> bool:
        return block in self._blocks

    def match(self, chain: Sequence[int]) -> int:
        """How many blocks from the start of `chain` are cached (no LRU update)."""
        blocks = self._blocks
        n = 0
        for block in chain:
            if block not in blocks:
                break
            n += 1
        return n

    def touch(self, chain: Sequence[int], matched: int) -> None:
        """Mark the first `matched` blocks of `chain` as just used."""
        move = self._blocks.move_to_end
        for block in chain[:matched]:
            move(block)

    def insert(self, chain: Iterable[int]) -> None:
        """Cache every block of `chain` (most recently used), evicting the oldest."""
        blocks = self._blocks
        for block in chain:
            if block in blocks:
                blocks.move_to_end(block)
            else:
                blocks[block] = None
        self.shrink_to(self.capacity)

    def shrink_to(self, capacity_blocks: int) -> None:
        """Evict least recently used blocks until at most `capacity_blocks` remain."""
        blocks = self._blocks
        excess = len(blocks) - max(0, capacity_blocks)
        for _ in range(excess):
            blocks.popitem(last=False)

    def resize(self, capacity_blocks: int) -> None:
        self.capacity = max(0, capacity_blocks)
        self.shrink_to(self.capacity)


@dataclass(frozen=True)
class BatchLimits:
    """A continuous-batching engine's admission limits."""

    max_num_seqs: int
    kv_capacity_blocks: int

    def admits(self, running_seqs: int, used_blocks: int, needed_blocks: int) -> bool:
        """Whether a sequence needing `needed_blocks` may start now.

        A sequence bigger than the whole cache is admitted alone (the engine
        would reject it; the models here let it run rather than wait forever).
        """
        if running_seqs >= self.max_num_seqs:
            return False
        if running_seqs == 0:
            return True
        return used_blocks + needed_blocks <= self.kv_capacity_blocks
