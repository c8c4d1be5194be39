"""Nodes grouped by identical state, so a policy that reads only state scores each group once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # fleet.py imports this module; the type is only for annotations
    from scheduler.domain.fleet import NodeView

# Past this many distinct states ever seen, ids start over (with a new token), so a
# long-lived snapshot does not keep every state it ever had.
MAX_STATES = 1_000_000


class NodeClasses:
    """class id -> member node names, kept in step with the nodes by FleetSnapshot.

    A class id names one state (host resources, each GPU's usage, health and mode,
    cordon) for as long as `token` is the same object; caches keyed by class ids
    must drop everything when the token changes.
    """

    def __init__(self) -> None:
        self.members: dict[int, dict[str, None]] = {}
        self.token = object()
        self._ids: dict[tuple[object, ...], int] = {}
        self._of_node: dict[str, int] = {}

    def update(self, name: str, node: NodeView | None) -> None:
        """File `name` under the class of its current state (None: it left the fleet)."""
        old = self._of_node.pop(name, None)
        if old is not None:
            members = self.members[old]
            del members[name]
            if not members:
                del self.members[old]
        if node is None:
            return
        state = node_state(node)
        class_id = self._ids.get(state)
        if class_id is None:
            if len(self._ids) >= MAX_STATES:
                self._start_over()
            class_id = self._ids[state] = len(self._ids)
        self._of_node[name] = class_id
        self.members.setdefault(class_id, {})[name] = None

    def _start_over(self) -> None:
        """Renumber the states in use now; everything keyed by the old ids is void."""
        states = {class_id: state for state, class_id in self._ids.items()}
        renumbered: dict[int, int] = {}
        self._ids = {}
        for class_id in self.members:
            renumbered[class_id] = self._ids[states[class_id]] = len(self._ids)
        self.members = {renumbered[c]: names for c, names in self.members.items()}
        self._of_node = {name: renumbered[c] for name, c in self._of_node.items()}
        self.token = object()


def node_state(node: NodeView) -> tuple[object, ...]:
    """Everything a state-only policy may read about a node, GPUs in a canonical order."""
    gpus = sorted(
        (g.model, g.mig_enabled, g.healthy, g.used_milli, g.used_memory_mib, g.memory_mib)
        for g in node.gpus
    )
    return (
        node.schedulable,
        node.cpu_milli,
        node.used_cpu_milli,
        node.memory_mib,
        node.used_memory_mib,
        tuple(gpus),
    )
