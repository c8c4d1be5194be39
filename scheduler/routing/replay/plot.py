"""route-sim's figure: TTFT, prefix-cache hit rate and load imbalance per policy (PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on a server or in CI

import matplotlib.pyplot as plt

from scheduler.routing.replay.run import PolicyResult


def plot_replay(results: Sequence[PolicyResult], path: Path, title: str) -> None:
    names = [r.policy for r in results]
    fig, (ttft, hits, imbalance) = plt.subplots(1, 3, figsize=(15, 4.8))
    x = range(len(results))
    ttft.bar([i - 0.2 for i in x], [r.ttft_mean_s for r in results], 0.4, label="mean")
    ttft.bar([i + 0.2 for i in x], [r.ttft_p99_s for r in results], 0.4, label="p99")
    ttft.set_yscale("log")
    ttft.set_ylabel("time to first token (s, log)")
    ttft.legend(fontsize=8)
    hits.bar(list(x), [100 * r.hit_rate for r in results], color="tab:green")
    hits.set_ylabel("prefix-cache hit rate (% of prompt tokens)")
    for axis in (ttft, hits):
        axis.set_xticks(list(x), names, rotation=30, ha="right", fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    for result in results:
        series = result.imbalance_series
        if series:
            start = series[0][0]
            imbalance.plot([t - start for t, _ in series], [v for _, v in series],
                           lw=0.8, label=result.policy)  # fmt: skip
    imbalance.set_xlabel("replay time (s)")
    imbalance.set_ylabel("max ÷ mean outstanding work (hardware-normalised)")
    imbalance.legend(fontsize=7)
    imbalance.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
