"""Placing a parallel layout: whole GPUs for every rank of a gang, all or nothing.

The rules (see scheduler/domain/layout.py for rank order):
- each TP group, or EP group when ep > tp (a "unit" of consecutive ranks),
  sits in one NVLink domain: a node, or the nodes that share an
  `nvlink-domain` label value other than "node" (an NVL72 rack);
- a replica's units stay close: the same domain as the previous unit, else
  the same rack, else the same zone (PP stages and CP rings cross nodes
  only when they must);
- a replica's first unit prefers a domain that holds the whole replica, then
  failure domains (zone, rack, node) no earlier replica of the gang uses;
- then where the requested model is warm (standby on a free GPU, else in the
  node's memory or disk), then the domain with the fewest free GPUs (best fit);
- all ranks on one GPU model, trying each allowed model and keeping the plan
  that spans the fewest nodes.
The plan is computed on copies of the free lists; nothing is reserved here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from scheduler.domain.auto_layout import ModelCapacity
from scheduler.domain.fleet import FleetSnapshot, GpuView, NodeView
from scheduler.domain.layout import ParallelLayout
from scheduler.placement.nvlink import choose_gpus
from scheduler.placement.pipeline import Pipeline, node_rejection, passing_gpus
from scheduler.placement.plugins import CycleContext

NVLINK_DOMAIN_LABEL = "nvlink-domain"
RACK_LABEL = "rack"
ZONE_LABEL = "zone"


def domain_key(node: NodeView) -> str:
    """Nodes with the same key share NVLink; "node" or no label: the node alone."""
    label = node.labels.get(NVLINK_DOMAIN_LABEL, "")
    return node.name if label in ("", "node") else f"nvlink:{label}"


@dataclass
class _Domain:
    key: str
    # Node name -> eligible idle GPUs of the model being planned, mutated while planning.
    free: dict[str, list[GpuView]] = field(default_factory=dict)
    nodes: dict[str, NodeView] = field(default_factory=dict)
    free_count: int = 0
    racks: frozenset[str] = frozenset()
    zones: frozenset[str] = frozenset()
    # How warm the requested model is here: 0 standby on a free GPU, 1 warm on a node, 2 cold.
    warmth: int = 2

    def add(self, node: NodeView, free: list[GpuView], model: str) -> None:
        self.free[node.name] = free
        self.nodes[node.name] = node
        self.free_count += len(free)
        # A node without the label is its own rack/zone: it shares nothing.
        self.racks |= {node.labels.get(RACK_LABEL, f"?{node.name}")}
        self.zones |= {node.labels.get(ZONE_LABEL, f"?{node.name}")}
        if model:
            if any(model in g.standby_models for g in free):
                self.warmth = 0
            elif model in node.warm_models():
                self.warmth = min(self.warmth, 1)


@dataclass(frozen=True)
class LayoutPlan:
    model: str
    gpus: tuple[GpuView, ...]  # rank order
    nodes: tuple[str, ...]  # distinct, rank 0's node first

    @property
    def cost(self) -> tuple[int, str]:
        return len(self.nodes), self.model


def plan_layout(
    ctx: CycleContext, pipeline: Pipeline, layout: ParallelLayout
) -> tuple[LayoutPlan | None, int]:
    """The best plan over the allowed models, and the most units any model could take now."""
    best: LayoutPlan | None = None
    most_units = 0
    for model in ctx.models:
        unit = layout.domain_unit
        domains = _eligible_domains(ctx, pipeline, model, unit)
        capacity = sum(d.free_count // unit for d in domains)
        most_units = max(most_units, capacity)
        if capacity < layout.world_size // unit:
            continue
        plan = _plan_model(model, domains, layout)
        if plan is not None and (best is None or plan.cost < best.cost):
            best = plan
    return best, most_units


def layout_unschedulable(ctx: CycleContext, layout: ParallelLayout) -> str | None:
    """Why no state of this fleet could hold the layout (all GPUs idle and healthy)."""
    unit = layout.domain_unit
    needed = layout.world_size // unit
    most = 0
    for model in ctx.models:
        per_domain: Counter[str] = Counter()
        for node in ctx.snapshot.nodes.values():
            per_domain[domain_key(node)] += sum(
                1 for g in node.gpus if g.model == model and not g.mig_enabled
            )
        most = max(most, sum(count // unit for count in per_domain.values()))
    if most >= needed:
        return None
    return (
        f"unschedulable: layout {layout.describe()} needs {needed} group(s) of {unit} GPUs "
        f"of one model inside one NVLink domain each; this fleet has room for {most}"
    )


def model_capacity(snapshot: FleetSnapshot, llm: str = "") -> dict[str, ModelCapacity]:
    """Per GPU model (outside MIG mode): the most GPUs one NVLink domain holds, all of
    them, and whether `llm` sits in warm standby on one of them."""
    per_domain: Counter[tuple[str, str]] = Counter()
    warm: set[str] = set()
    for node in snapshot.nodes.values():
        for gpu in node.gpus:
            if not gpu.mig_enabled:
                per_domain[gpu.model, domain_key(node)] += 1
                if llm and llm in gpu.standby_models:
                    warm.add(gpu.model)
    capacity: dict[str, ModelCapacity] = {}
    for (model, _), count in per_domain.items():
        known = capacity.get(model, ModelCapacity(0, 0))
        capacity[model] = ModelCapacity(
            max(known.domain, count), known.total + count, model in warm
        )
    return capacity


def _eligible_domains(
    ctx: CycleContext, pipeline: Pipeline, model: str, unit: int
) -> list[_Domain]:
    """Domains with at least `unit` idle GPUs of `model` passing the filters.

    The snapshot's idle index lists only nodes with an empty GPU of the model
    (healthy, schedulable), so a busy fleet costs less than a scan.
    """
    domains: dict[str, _Domain] = {}
    for node, idle in ctx.snapshot.iter_whole_candidates((model,), 1):
        if node_rejection(ctx, pipeline, node) is not None:
            continue
        free = passing_gpus(ctx, pipeline, idle)
        if free:
            key = domain_key(node)
            domains.setdefault(key, _Domain(key)).add(node, free, ctx.request.model)
    return sorted((d for d in domains.values() if d.free_count >= unit), key=lambda d: d.key)


def _plan_model(model: str, domains: list[_Domain], layout: ParallelLayout) -> LayoutPlan | None:
    unit = layout.domain_unit
    units_per_replica = layout.replica_size // unit
    ranks: list[GpuView] = []
    # Failure domains taken by earlier replicas: zone, rack and node values.
    used_by_replicas: Counter[str] = Counter()
    for _ in range(layout.replicas):
        previous: _Domain | None = None
        replica_nodes: set[str] = set()
        for index in range(units_per_replica):
            remaining = (units_per_replica - index) * unit
            candidates = [d for d in domains if d.free_count >= unit]
            if not candidates:
                return None
            if previous is None:
                chosen = min(
                    candidates,
                    key=lambda d: (
                        d.free_count < remaining,  # holds the whole replica
                        _spread_penalty(d, used_by_replicas),
                        d.warmth,
                        d.free_count,
                        d.key,
                    ),
                )
            else:
                racks, zones = previous.racks, previous.zones
                chosen = min(
                    candidates,
                    key=lambda d: (
                        d is not previous,
                        not (d.racks & racks),
                        not (d.zones & zones),
                        d.warmth,
                        d.free_count < remaining,
                        d.free_count,
                        d.key,
                    ),
                )
            gpus = _take(chosen, unit)
            ranks.extend(gpus)
            replica_nodes.update(g.node for g in gpus)
            previous = chosen
        for name in replica_nodes:
            node = next(d.nodes[name] for d in domains if name in d.nodes)
            used_by_replicas.update(
                {
                    f"zone={node.labels.get(ZONE_LABEL, '')}",
                    f"rack={node.labels.get(RACK_LABEL, '')}",
                    f"node={name}",
                }
            )
    nodes = tuple(dict.fromkeys(g.node for g in ranks))
    return LayoutPlan(model, tuple(ranks), nodes)


def _spread_penalty(domain: _Domain, used: Counter[str]) -> tuple[int, int, int]:
    """How often earlier replicas used this domain's zone, rack and node (fewer is better)."""
    if not used:
        return 0, 0, 0
    zone = sum(used[f"zone={n.labels.get(ZONE_LABEL, '')}"] for n in domain.nodes.values())
    rack = sum(used[f"rack={n.labels.get(RACK_LABEL, '')}"] for n in domain.nodes.values())
    node = sum(used[f"node={name}"] for name in domain.nodes)
    return zone, rack, node


def _take(domain: _Domain, count: int) -> list[GpuView]:
    """`count` free GPUs of the domain: one node's NVLink-connected set when one
    node can hold them (the fullest such node), else spread over its nodes."""
    fitting = [name for name, gpus in domain.free.items() if len(gpus) >= count]
    if fitting:
        name = min(fitting, key=lambda n: (len(domain.free[n]), n))
        node = domain.nodes[name]
        chosen, _ = choose_gpus(domain.free[name], count, len(node.gpus))
        return _remove(domain, name, chosen)
    taken: list[GpuView] = []
    for name in sorted(domain.free, key=lambda n: (-len(domain.free[n]), n)):
        need = count - len(taken)
        if need <= 0:
            break
        free = sorted(domain.free[name], key=lambda g: g.index)[:need]
        taken.extend(_remove(domain, name, free))
    return taken


def _remove(domain: _Domain, name: str, chosen: Sequence[GpuView]) -> list[GpuView]:
    ids = {g.id for g in chosen}
    domain.free[name] = [g for g in domain.free[name] if g.id not in ids]
    domain.free_count -= len(ids)
    if not domain.free[name]:
        del domain.free[name]
    return sorted(chosen, key=lambda g: g.index)
