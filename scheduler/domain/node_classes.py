"""Nodes grouped by identical state, so a policy that reads only state scores each group once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # fleet.py imports this module; the type is only for annotations
    from scheduler.domain.fleet import NodeView

# Past this many distinct states ever seen, ids start over (with a new token), so a
# long-lived snapshot does not keep every state it ever had.
MAX_STATES = 1_000_000
# The change log keeps its newer half once it holds this many entries; a reader further
# behind than that is told to look at every class again.
MAX_CHANGES = 1 << 16


class NodeClasses:
    """class id -> member node names, kept in step with the nodes by FleetSnapshot.

    A class id names one state (host resources, each GPU's usage, health and mode,
    cordon) for as long as `token` is the same object; caches keyed by class ids
    must drop everything when the token changes.

    A change log lists the classes that appeared or emptied, so a reader that has
    seen every class at some `version` need only look at those since
    (changed_since), not at every class again.
    """

    def __init__(self) -> None:
        self.members: dict[int, dict[str, None]] = {}
        # class id -> the id of its GPUs' state (what GPU filters read), as many classes
        # differ only in host CPU or memory; same token as the class ids.
        self.gpu_states: dict[int, int] = {}
        self.token = object()
        self._ids: dict[tuple[object, ...], int] = {}
        self._gpu_ids: dict[object, int] = {}
        self._of_node: dict[str, int] = {}
        self._changes: list[int] = []  # class ids, as they appeared or emptied
        self._dropped = 0  # entries cut from the log's front

    @property
    def version(self) -> int:
        """Grows each time a class appears or empties; a reader keeps the one it has seen."""
        return self._dropped + len(self._changes)

    def changed_since(self, version: int) -> list[int] | None:
        """The ids of the classes that appeared or emptied after `version`, an id once per
        change (so maybe repeated; look at `members` for where it stands now); None when
        the log no longer reaches back that far, or `version` is not one of this log's."""
        at = version - self._dropped
        if not 0 <= at <= len(self._changes):
            return None
        return self._changes[at:]

    def update(self, name: str, node: NodeView | None) -> None:
        """File `name` under the class of its current state (None: it left the fleet)."""
        old = self._of_node.pop(name, None)
        if old is not None:
            left = self.members[old]
            del left[name]
            if not left:
                del self.members[old]
                self._changed(old)
        if node is None:
            return
        state = node_state(node)
        class_id = self._ids.get(state)
        if class_id is None:
            if len(self._ids) >= MAX_STATES:
                self._start_over()
            class_id = self._ids[state] = len(self._ids)
            self._file_gpu_state(class_id, state)
        self._of_node[name] = class_id
        members = self.members.get(class_id)
        if members is None:
            members = self.members[class_id] = {}
            self._changed(class_id)
        members[name] = None

    def _file_gpu_state(self, class_id: int, state: tuple[object, ...]) -> None:
        gpus = state[-1]  # node_state's last part
        self.gpu_states[class_id] = self._gpu_ids.setdefault(gpus, len(self._gpu_ids))

    def _changed(self, class_id: int) -> None:
        if len(self._changes) >= MAX_CHANGES:
            keep = MAX_CHANGES // 2
            self._dropped += len(self._changes) - keep
            del self._changes[:-keep]
        self._changes.append(class_id)

    def _start_over(self) -> None:
        """Renumber the states in use now; everything keyed by the old ids is void."""
        states = {class_id: state for state, class_id in self._ids.items()}
        renumbered: dict[int, int] = {}
        self._ids = {}
        self.gpu_states = {}
        self._gpu_ids = {}
        for class_id in self.members:
            renumbered[class_id] = self._ids[states[class_id]] = len(self._ids)
            self._file_gpu_state(renumbered[class_id], states[class_id])
        self.members = {renumbered[c]: names for c, names in self.members.items()}
        self._of_node = {name: renumbered[c] for name, c in self._of_node.items()}
        self.token = object()
        # The log names old ids: every reader, up to date or not, looks at every class
        # again (one more than the log held, so no old version is valid).
        self._dropped += len(self._changes) + 1
        self._changes = []


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
