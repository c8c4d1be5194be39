"""Why nothing fits: every candidate's first rejection, counted, and whether anything ever could.

This is the slow path; place() takes it only when its index walk found
nothing feasible. On a fleet of more than EXPLAIN_NODES nodes it scans that
many, drawn at random from the fleet, and scales the counts up (saying so in a
last reason): a failed placement then costs the same at 100,000 GPUs as at
2,000, where a full scan took 200 ms (issue 17). Only when the sample holds no
node of an allowed model at all (a rare model, say) is the whole fleet scanned.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from scheduler.domain.catalogue import CATALOGUE
from scheduler.domain.fleet import GpuView, NodeView
from scheduler.domain.mig import models_with_profile
from scheduler.domain.requests import FractionDemand, WholeDemand
from scheduler.placement.pipeline import Pipeline
from scheduler.placement.plugins import CycleContext

UNSCHEDULABLE = "Unschedulable"
SAMPLED = "Sampled"
EXPLAIN_NODES = 128


def explain(ctx: CycleContext, pipeline: Pipeline) -> tuple[list[tuple[str, str, int]], bool]:
    """(plugin, reason, count) sorted by count, largest first, and the unschedulable flag.

    An unschedulable request gets its one structural reason, with count 0 as it
    judges the fleet rather than candidates, and no scan: what is busy or
    cordoned now does not matter when nothing could ever hold it.
    """
    why = unschedulable_reason(ctx)
    if why is not None:
        return [(UNSCHEDULABLE, why, 0)], True
    every = list(ctx.snapshot.nodes.values())
    nodes, step = _sample(every)
    if step > 1 and not any(g.model in ctx.models for node in nodes for g in node.gpus):
        nodes, step = every, 1.0  # the sample missed every node of an allowed model
    tally = _tally(ctx, pipeline, nodes)
    scaled = [(p, r, max(1, round(n * step))) for (p, r), n in tally.items()]
    reasons = sorted(scaled, key=lambda r: (-r[2], r[0], r[1]))
    if step > 1:
        note = f"counts estimated from {len(nodes)} of {len(every)} nodes drawn at random"
        reasons.append((SAMPLED, note, 0))
    return reasons, False


def _sample(nodes: list[NodeView]) -> tuple[list[NodeView], float]:
    """At most EXPLAIN_NODES nodes drawn at random (seeded by the fleet's size, so
    the same fleet is explained the same way; a stride would alias with a
    fleet laid out in a pattern), and how many nodes each stands for."""
    if len(nodes) <= EXPLAIN_NODES:
        return nodes, 1.0
    return random.Random(len(nodes)).sample(nodes, EXPLAIN_NODES), len(nodes) / EXPLAIN_NODES


def _tally(
    ctx: CycleContext, pipeline: Pipeline, nodes: list[NodeView]
) -> Counter[tuple[str, str]]:
    """Node rejections count the node's GPUs, except for whole GPUs where they count nodes.

    Filter-major loops (each filter over every survivor) keep the scan cheap.
    """
    whole = isinstance(ctx.request.demand, WholeDemand)
    tally: Counter[tuple[str, str]] = Counter()
    for node_filter in pipeline.node_filters:
        kept_nodes: list[NodeView] = []
        for node in nodes:
            reason = node_filter.filter_node(ctx, node)
            if reason is None:
                kept_nodes.append(node)
            else:
                tally[node_filter.name, reason] += 1 if whole else len(node.gpus)
        nodes = kept_nodes
    gpus = [gpu for node in nodes for gpu in node.gpus]
    for gpu_filter in pipeline.gpu_filters:
        kept: list[GpuView] = []
        check = gpu_filter.filter_gpu
        for gpu in gpus:
            reason = check(ctx, gpu)
            if reason is None:
                kept.append(gpu)
            else:
                tally[gpu_filter.name, reason] += 1
        gpus = kept
    if pipeline.gang_filters:
        free: dict[str, dict[str, list[GpuView]]] = {node.name: {} for node in nodes}
        for gpu in gpus:
            free[gpu.node].setdefault(gpu.model, []).append(gpu)
        for node in nodes:
            for gang_filter in pipeline.gang_filters:
                reason = gang_filter.filter_gang(ctx, node, free[node.name])
                if reason is not None:
                    tally[gang_filter.name, reason] += 1
                    break
    return tally


def unschedulable_reason(ctx: CycleContext) -> str | None:
    """Why no GPU or node of this fleet could ever hold the request, whatever is free now."""
    structure = ctx.snapshot.structure
    demand = ctx.request.demand
    if isinstance(demand, WholeDemand):
        if ctx.request.host_only:
            return None
        if demand.count < 1:
            return "unschedulable: a whole-GPU request needs at least 1 GPU"
        largest = max((structure.max_gpus_per_node.get(m, 0) for m in ctx.models), default=0)
        if largest >= demand.count:
            return None
        return (
            f"unschedulable: no node has {demand.count} GPUs of an allowed model "
            f"(largest: {largest})"
        )
    if isinstance(demand, FractionDemand):
        if demand.milli > 1000:
            return f"unschedulable: {demand.milli} milli-GPU is more than a whole GPU (1000)"
        memory = [structure.max_memory_mib[m] for m in ctx.models if m in structure.max_memory_mib]
        if not memory:
            return "unschedulable: no GPU of an allowed model outside MIG mode"
        if max(memory) >= demand.memory_mib:
            return None
        return (
            f"unschedulable: no GPU of an allowed model has {demand.memory_mib} MiB "
            f"(largest: {max(memory)} MiB)"
        )
    offering = models_with_profile(demand.profile)
    here = _fleet_mig_profiles(structure.mig_models)
    if not offering:
        return f"unschedulable: no GPU model has MIG profile {demand.profile}{here}"
    if any(m in structure.mig_models for m in offering if m in ctx.models):
        return None
    return (
        f"unschedulable: no GPU of an allowed model in MIG mode offers {demand.profile} "
        f"(models with it: {', '.join(offering)}){here}"
    )


def _fleet_mig_profiles(mig_models: Iterable[str]) -> str:
    """What the fleet's MIG-mode GPUs do offer: the profile to ask for instead."""
    offers = [
        f"{model}: {', '.join(p.name for p in CATALOGUE[model].mig_profiles)}"
        for model in sorted(mig_models)
        if model in CATALOGUE
    ]
    if not offers:
        return "; this fleet has no GPU in MIG mode"
    return f"; this fleet's MIG-mode GPUs offer {'; '.join(offers)}"
