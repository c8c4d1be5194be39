"""Prefix hashing, the LRU prefix cache and batch admission (scheduler/serving/kv_cache.py)."""

from __future__ import annotations

from scheduler.serving.kv_cache import (
    BatchLimits,
    PrefixCache,
    block_hashes,
    estimate_tokens,
)


def test_block_hashes_chain_so_equal_prefixes_share_hashes() -> None:
    system = "You are a helpful assistant. " * 20  # > 2 blocks of 16 tokens × 4 chars
    a = block_hashes(system + "What is the capital of France?" * 10, 16)
    b = block_hashes(system + "Tell me a joke about GPUs please" * 10, 16)
    shared = len(system) // 64
    assert a[:shared] == b[:shared]
    assert a[shared + 1 :] != b[shared + 1 :]
    # A different first block changes every later hash, even for equal text.
    c = block_hashes("X" * 64 + system, 16)
    assert not set(c) & set(a)


def test_only_full_blocks_are_hashed_and_limit_caps_them() -> None:
    assert block_hashes("a" * 63, 16) == []
    assert len(block_hashes("a" * 64 * 5 + "tail", 16)) == 5
    assert len(block_hashes("a" * 64 * 5, 16, limit=2)) == 2


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("hi") == 1
    assert estimate_tokens("x" * 400) == 100


def test_prefix_cache_matches_from_the_start_only() -> None:
    cache = PrefixCache(10)
    cache.insert([1, 2, 3])
    assert cache.match([1, 2, 3, 4]) == 3
    assert cache.match([1, 9, 3]) == 1  # a block's hash stands for its whole prefix
    assert cache.match([]) == 0


def test_prefix_cache_evicts_least_recently_used() -> None:
    cache = PrefixCache(4)
    cache.insert([1, 2])
    cache.insert([3, 4])
    cache.touch([1, 2], 2)
    cache.insert([5, 6])
    assert 1 in cache and 2 in cache and 3 not in cache and 4 not in cache
    assert len(cache) == 4
    cache.resize(1)
    assert len(cache) == 1 and 6 in cache
    cache.shrink_to(0)
    assert len(cache) == 0


def test_batch_admission() -> None:
    limits = BatchLimits(max_num_seqs=2, kv_capacity_blocks=100)
    assert limits.admits(0, 0, 500)  # alone, even if too big
    assert limits.admits(1, 50, 50)
    assert not limits.admits(1, 50, 51)
    assert not limits.admits(2, 0, 1)
