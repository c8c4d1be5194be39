"""Choosing which idle GPUs of a node make up a whole-GPU gang."""

from __future__ import annotations

from collections.abc import Sequence

from scheduler.domain.fleet import GpuView


def choose_gpus(
    free: Sequence[GpuView], count: int, node_size: int
) -> tuple[tuple[GpuView, ...], int]:
    """`count` of these GPUs of one node, NVLink peers of each other where possible.

    Returns the GPUs (by index) and how many of their pairs are NVLink peers.
    nvlink_peers holds the indexes of peer GPUs on the same node. Fully
    connected (NVSwitch) or unconnected (PCIe) nodes take the lowest indexes;
    otherwise a greedy pass from each seed keeps the set with most linked pairs,
    and a single GPU is one whose peers are busy, keeping linked groups whole.
    """
    ordered = sorted(free, key=lambda g: g.index)
    pairs = count * (count - 1) // 2
    if all(len(g.nvlink_peers) >= node_size - 1 for g in ordered):
        return tuple(ordered[:count]), pairs
    if not any(g.nvlink_peers for g in ordered):
        return tuple(ordered[:count]), 0
    free_indexes = {g.index for g in ordered}
    links = {g.index: free_indexes.intersection(g.nvlink_peers) - {g.index} for g in ordered}
    if count == 1:
        return (min(ordered, key=lambda g: (len(links[g.index]), g.index)),), 0
    best: list[GpuView] = []
    best_linked = -1
    for seed in ordered:
        chosen = [seed]
        rest = [g for g in ordered if g is not seed]
        linked = 0
        while len(chosen) < count:
            gains = [sum(c.index in links[g.index] for c in chosen) for g in rest]
            # Most links into the set so far; max() keeps the first, i.e. lowest index.
            pick = max(range(len(rest)), key=gains.__getitem__)
            linked += gains[pick]
            chosen.append(rest.pop(pick))
        if linked > best_linked:
            best, best_linked = chosen, linked
    return tuple(sorted(best, key=lambda g: g.index)), best_linked
