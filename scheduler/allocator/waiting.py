"""What the allocator knows of the waiting queue without reading it: which GPU
models the requests that could be placed (not unschedulable) may use.

A batch that freed capacity runs the queue only if something waiting could use
a model it freed; otherwise it skips the read altogether. The hint only ever
errs towards "look": anything the allocator cannot see (another replica's new
request, a requeue, a lost notification) widens it to any model.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class WaitingModels:
    any_model: bool = True  # something waiting may use any model (or we do not know)
    models: set[str] = field(default_factory=set)

    @classmethod
    def nothing(cls) -> WaitingModels:
        return cls(any_model=False)

    def add(self, gpu_models: Iterable[str]) -> None:
        """A request that may use these models (none given: any) now waits."""
        wanted = set(gpu_models)
        if wanted:
            self.models |= wanted
        else:
            self.any_model = True

    def widen(self) -> None:
        """Something may wait that this replica did not see go into the queue."""
        self.any_model = True

    def could_use(self, freed: Iterable[str]) -> bool:
        return self.any_model or not self.models.isdisjoint(freed)

    @property
    def empty(self) -> bool:
        return not self.any_model and not self.models

    def copy(self) -> WaitingModels:
        return WaitingModels(self.any_model, set(self.models))
