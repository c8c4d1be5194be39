"""The cheapest subset of a few items that satisfies a monotone test.

Used per site (one node or one GPU), where a handful of allocations compete,
so an exact search is affordable; a step cap bounds the rare crowded site.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence

# Subsets looked at before falling back to greedy; a 8-GPU node needs at most a
# few hundred, so only sites crowded with small fractions ever reach it.
MAX_STEPS = 4096


def cheapest_subset(
    costs: Sequence[float],
    priorities: Sequence[int],
    fits: Callable[[int], bool],
    max_steps: int = MAX_STEPS,
) -> int | None:
    """Bitmask of the subset with the least (cost, size, priority sum) that fits, else None.

    Items must come sorted by (cost, priority) and costs must be >= 0; `fits`
    takes a bitmask over the items and must be monotone (a superset of a
    fitting set fits). Subsets are enumerated in increasing key order (each
    one either adds the next item or swaps its last item for the next one),
    so the first that fits is the cheapest.
    """
    count = len(costs)
    if count == 0 or not fits((1 << count) - 1):
        return None
    # (cost, size, priority sum, last item, mask). The heap never runs dry before
    # the full set, which fits, comes off it.
    heap = [(costs[0], 1, priorities[0], 0, 1)]
    for _ in range(max_steps):
        cost, size, priority, last, mask = heapq.heappop(heap)
        if fits(mask):
            return mask
        following = last + 1
        if following == count:
            continue
        bit = 1 << following
        heapq.heappush(
            heap,
            (cost + costs[following], size + 1, priority + priorities[following], following,
             mask | bit),
        )  # fmt: skip
        heapq.heappush(
            heap,
            (cost - costs[last] + costs[following], size,
             priority - priorities[last] + priorities[following], following,
             (mask & ~(1 << last)) | bit),
        )  # fmt: skip
    return _greedy(count, fits)


def _greedy(count: int, fits: Callable[[int], bool]) -> int:
    """Cheapest items first until it fits, then drop the dearest ones it can do without."""
    mask = 0
    for item in range(count):
        mask |= 1 << item
        if fits(mask):
            break
    for item in reversed(range(count)):
        bit = 1 << item
        if mask & bit and fits(mask & ~bit):
            mask &= ~bit
    return mask
