"""Our unallocated-GPU curves against the published ones, as a PNG (matplotlib, headless)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server or in CI

import matplotlib.pyplot as plt

from scheduler.sim.report import PUBLISHED_POLICY

FIRST_LEVEL = 80  # the part of the curves where pods start failing


def plot_curves(
    ours: Mapping[str, Sequence[float | None]],
    published: Mapping[str, Sequence[float]],
    path: Path,
    title: str,
) -> None:
    """Solid: our policies; dashed: the paper's; dotted: the ideal (100 - arrived)."""
    fig, ax = plt.subplots(figsize=(9, 5.5))
    levels = list(range(FIRST_LEVEL, 131))
    ax.plot(levels, [max(0, 100 - k) for k in levels], ":", color="grey", label="ideal")
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    shown = sorted(set(ours) | {o for o, p in PUBLISHED_POLICY.items() if p in published})
    for i, policy in enumerate(shown):
        colour = colours[i % len(colours)]
        values = ours.get(policy)
        if values is not None:
            points = [(k, values[k]) for k in levels if values[k] is not None]
            ax.plot(*zip(*points, strict=True), "-", color=colour, label=f"{policy} (ours)")
        paper = published.get(PUBLISHED_POLICY.get(policy, ""))
        if paper is not None:
            ax.plot(levels, [paper[k] for k in levels], "--", color=colour, alpha=0.7,
                    label=f"{PUBLISHED_POLICY[policy]} (paper)")  # fmt: skip
    ax.set_xlabel("arrived GPU request (% of cluster GPU capacity)")
    ax.set_ylabel("unallocated GPUs (% of capacity)")
    ax.set_ylim(0, 25)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
