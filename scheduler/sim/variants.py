"""Workload mixes derived from a pod list by resampling, after the paper's variant traces.

The authors' variant files (gpushareNN, multigpuNN, gpuspecNN, cpuNNN) are not
on disk; these are approximations of them built from the default list:
- gpushareX: X % of the GPU request comes from GPU-sharing pods;
- multigpuX: X % of the GPU request comes from multi-GPU pods;
- gpuspecX: X % of GPU pods may only use some GPU models;
- cpuNNN: CPU-only pods are NNN/10 % of pods by count.
The total GPU request stays that of the source list; pods are drawn with replacement.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from scheduler.sim.trace import TraceNode, TracePod

VARIANT = re.compile(r"^(gpushare|multigpu|gpuspec|cpu)(\d+)$")
# gpu_spec values of the authors' gpuspec33 by popularity: T4 is 1291 of 2388 constrained
# pods (SOURCE.md); the split of the rest between G2, P100 and V100 is our guess.
SPEC_MIX: tuple[tuple[frozenset[str], float], ...] = (
    (frozenset({"T4"}), 0.54),
    (frozenset({"G2"}), 0.20),
    (frozenset({"P100"}), 0.13),
    (frozenset({"V100M16", "V100M32"}), 0.13),
)


def derive(
    pods: Sequence[TracePod], variant: str, nodes: Sequence[TraceNode], seed: int = 0
) -> list[TracePod]:
    """The pod list for `variant` (e.g. "gpushare60", "cpu250"); ValueError if unknown."""
    match = VARIANT.match(variant)
    if match is None:
        raise ValueError(
            f"unknown mix {variant!r}: use gpushareNN, multigpuNN, gpuspecNN or cpuNNN"
        )
    kind, number = match.group(1), int(match.group(2))
    rng = random.Random(f"mix-{variant}-{seed}")
    if kind == "gpushare":
        return _reshare(pods, rng, number / 100, lambda p: p.sharing)
    if kind == "multigpu":
        return _reshare(pods, rng, number / 100, lambda p: p.num_gpu > 1)
    if kind == "gpuspec":
        return _constrain(pods, rng, number / 100, nodes)
    return _cpu_share(pods, rng, number / 1000)


def _draw(rng: random.Random, pool: Sequence[TracePod], target: float, tag: str) -> list[TracePod]:
    """Pods drawn with replacement until the next would pass `target` milli-GPU."""
    drawn: list[TracePod] = []
    total = 0
    while pool:
        pod = pool[rng.randrange(len(pool))]
        if total + pod.gpu_request > target:
            break
        drawn.append(replace(pod, name=f"{pod.name}-{tag}{len(drawn)}"))
        total += pod.gpu_request
    return drawn


def _reshare(
    pods: Sequence[TracePod], rng: random.Random, share: float, chosen: Callable[[TracePod], bool]
) -> list[TracePod]:
    """`share` of the GPU request from pods that `chosen` picks, the rest from other GPU pods."""
    gpu = [p for p in pods if p.gpu_request]
    total = sum(p.gpu_request for p in gpu)
    inside = [p for p in gpu if chosen(p)]
    outside = [p for p in gpu if not chosen(p)]
    mixed = _draw(rng, inside, share * total, "in")
    mixed += _draw(rng, outside, (1 - share) * total, "out")
    mixed += [p for p in pods if not p.gpu_request]
    rng.shuffle(mixed)
    return mixed


def _constrain(
    pods: Sequence[TracePod], rng: random.Random, share: float, nodes: Sequence[TraceNode]
) -> list[TracePod]:
    """`share` of GPU pods get a gpu_spec that some node can hold."""
    largest: dict[str, int] = {}
    for node in nodes:
        largest[node.model] = max(largest.get(node.model, 0), node.gpus)
    gpu_positions = [i for i, p in enumerate(pods) if p.gpu_request]
    out = list(pods)
    for i in rng.sample(gpu_positions, round(share * len(gpu_positions))):
        pod = out[i]
        fits = [(s, w) for s, w in SPEC_MIX if max(largest.get(m, 0) for m in s) >= pod.num_gpu]
        if fits:
            specs, weights = zip(*fits, strict=True)
            out[i] = replace(pod, gpu_spec=rng.choices(specs, weights)[0])
    return out


def _cpu_share(pods: Sequence[TracePod], rng: random.Random, share: float) -> list[TracePod]:
    """The GPU pods plus CPU-only pods, drawn with replacement, `share` of pods by count."""
    gpu = [p for p in pods if p.gpu_request]
    cpu = [p for p in pods if not p.gpu_request]
    want = round(share / (1 - share) * len(gpu)) if share < 1 else len(cpu)
    drawn = [replace(c, name=f"{c.name}-cpu{i}") for i, c in enumerate(rng.choices(cpu, k=want))]
    mixed = gpu + drawn if cpu else list(gpu)
    rng.shuffle(mixed)
    return mixed
