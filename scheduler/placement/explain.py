"""Why nothing fits: every candidate's first rejection, counted, and whether anything ever could.

This is the slow path; place() takes it only when its index walk found
nothing feasible. Its work is bounded whatever the fleet's size (issue 17: a
full scan took 200 ms at 100,000 GPUs):

- nodes holding no GPU of a model the request may use are counted exactly,
  model by model, from the fleet's structure (by the model filters alone: a
  wrong-model GPU is reported as such even when it is also cordoned or
  unhealthy), with no scan;
- the nodes that do hold an allowed model are run through the filters, all of
  them up to EXPLAIN_NODES, else that many drawn at random with the counts
  scaled up (said so in a last reason). A rare model is therefore never
  missed: its few nodes are scanned whole.
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
from scheduler.placement.plugins import CycleContext, GenerationAllowed, GpuModelAllowed

UNSCHEDULABLE = "Unschedulable"
SAMPLED = "Sampled"
EXPLAIN_NODES = 64  # ~0.7 ms of CPU for 8-GPU nodes; the estimate is said to be one
# The filters that judge a GPU by its model alone (counted exactly, see above).
MODEL_FILTERS = frozenset({GpuModelAllowed.name, GenerationAllowed.name})


def explain(ctx: CycleContext, pipeline: Pipeline) -> tuple[list[tuple[str, str, int]], bool]:
    """(plugin, reason, count) sorted by count, largest first, and the unschedulable flag.

    An unschedulable request gets its one structural reason, with count 0 as it
    judges the fleet rather than candidates, and no scan: what is busy or
    cordoned now does not matter when nothing could ever hold it.
    """
    why = unschedulable_reason(ctx)
    if why is not None:
        return [(UNSCHEDULABLE, why, 0)], True
    snapshot = ctx.snapshot
    if len(snapshot.nodes) <= EXPLAIN_NODES:
        tally = _tally(ctx, pipeline, list(snapshot.nodes.values()))
        return _sorted(tally.items()), False
    holding = snapshot.structure.nodes_holding(ctx.models)
    names, step = _sample(holding)
    sampled = _tally(ctx, pipeline, [snapshot.nodes[name] for name in names])
    counts = [(key, max(1, round(n * step))) for key, n in sampled.items()]
    exact = _other_models(ctx, pipeline)
    merged: Counter[tuple[str, str]] = Counter(dict(exact))
    for key, n in counts:
        merged[key] += n
    reasons = _sorted(merged.items())
    if step > 1:
        note = (
            f"counts estimated from {len(names)} of {len(holding)} nodes drawn at random "
            "(of those holding an allowed GPU model)"
        )
        reasons.append((SAMPLED, note, 0))
    return reasons, False


def _sorted(tally: Iterable[tuple[tuple[str, str], int]]) -> list[tuple[str, str, int]]:
    return sorted(((p, r, n) for (p, r), n in tally), key=lambda r: (-r[2], r[0], r[1]))


def _sample(names: tuple[str, ...]) -> tuple[list[str], float]:
    """At most EXPLAIN_NODES names drawn at random (seeded by their number, so the
    same fleet is explained the same way; a stride would alias with a fleet laid
    out in a pattern), and how many nodes each stands for."""
    if len(names) <= EXPLAIN_NODES:
        return list(names), 1.0
    return random.Random(len(names)).sample(names, EXPLAIN_NODES), len(names) / EXPLAIN_NODES


def _other_models(ctx: CycleContext, pipeline: Pipeline) -> Counter[tuple[str, str]]:
    """The GPUs of models the request may not use on nodes holding none it may, per
    model filter reason: O(models + mixed-model nodes), not O(fleet)."""
    structure, nodes = ctx.snapshot.structure, ctx.snapshot.nodes
    allowed = set(ctx.models)
    # A node of several models that holds an allowed one was judged in the sample.
    mixed = (nodes[name] for name in structure.mixed_nodes)
    sampled_mixed = [n for n in mixed if any(g.model in allowed for g in n.gpus)]
    filters = [f for f in pipeline.gpu_filters if f.name in MODEL_FILTERS]
    tally: Counter[tuple[str, str]] = Counter()
    for model in sorted(structure.model_gpus.keys() - allowed):
        count = structure.model_gpus[model]
        count -= sum(1 for node in sampled_mixed for g in node.gpus if g.model == model)
        if count <= 0:
            continue
        node = nodes[structure.model_nodes[model][0]]
        gpu = next(g for g in node.gpus if g.model == model)
        for model_filter in filters:
            reason = model_filter.filter_gpu(ctx, gpu)
            if reason is not None:
                tally[model_filter.name, reason] += count
                break
    return tally


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
