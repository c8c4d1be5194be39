"""Soft preferences that pick among nodes before best fit does: spot nodes,
and the spread of a deployment's replicas over failure domains.

Batch and throughput work prefers spot (preemptible, cheaper) nodes and
latency-critical work avoids them. A replica stays off the zones, then the
racks, then the nodes its siblings use (`PlacementRequest.spread_away`). A
preference never makes a request wait: when the preferred nodes are full,
the request goes anywhere it fits.
"""

from __future__ import annotations

from dataclasses import replace

from scheduler.domain.fleet import FleetSnapshot, NodeView
from scheduler.domain.requests import PlacementRequest
from scheduler.placement.engine import PlacementConfig, PlacementOutcome, place

SPOT_LABEL = "spot"
PREFERS_SPOT = frozenset({"batch", "throughput"})
AVOIDS_SPOT = frozenset({"latency-critical"})


def spot_nodes(snapshot: FleetSnapshot) -> frozenset[str]:
    return frozenset(name for name, node in snapshot.nodes.items() if is_spot(node))


def is_spot(node: NodeView) -> bool:
    return node.labels.get(SPOT_LABEL) == "true"


def place_with_preferences(
    snapshot: FleetSnapshot,
    request: PlacementRequest,
    config: PlacementConfig,
    spot: frozenset[str],
) -> PlacementOutcome:
    """place(), first away from the request's spread sets, then on the nodes
    its workload class prefers."""
    if request.spread_away:
        anywhere = replace(request, spread_away=())
        for away in request.spread_away:
            if len(away) >= len(snapshot.nodes) and away.issuperset(snapshot.nodes):
                continue
            narrowed = replace(anywhere, avoid_nodes=request.avoid_nodes | away)
            spread = place_with_preferences(snapshot, narrowed, config, spot)
            if spread.placement is not None:
                return spread
        request = anywhere
    if spot and request.workload_class in PREFERS_SPOT | AVOIDS_SPOT:
        others = frozenset(snapshot.nodes) - spot
        avoid = others if request.workload_class in PREFERS_SPOT else spot
        if len(avoid) < len(snapshot.nodes):  # both sets are of the snapshot's nodes
            narrowed = replace(request, avoid_nodes=request.avoid_nodes | avoid)
            preferred = place(snapshot, narrowed, config)
            if preferred.placement is not None:
                return preferred
    return place(snapshot, request, config)
