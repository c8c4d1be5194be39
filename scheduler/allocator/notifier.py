"""Wakes WatchAllocation and WatchFleet streams in this process when an
allocation (or, for WatchFleet, the fleet) changes."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager


class ChangeNotifier:
    """A version counter per watched allocation id, behind one condition."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watchers: Counter[str] = Counter()
        self._versions: dict[str, int] = {}
        self._closed = False
        # WatchFleet: one version for any change, counted only while watched.
        self._fleet_watchers = 0
        self._fleet_version = 0

    @contextmanager
    def watching(self, allocation_id: str) -> Iterator[None]:
        with self._cond:
            self._watchers[allocation_id] += 1
            self._versions.setdefault(allocation_id, 0)
        try:
            yield
        finally:
            with self._cond:
                self._watchers[allocation_id] -= 1
                if self._watchers[allocation_id] <= 0:
                    del self._watchers[allocation_id]
                    self._versions.pop(allocation_id, None)

    def version(self, allocation_id: str) -> int:
        with self._cond:
            return self._versions.get(allocation_id, 0)

    def publish(self, allocation_ids: Iterable[str]) -> None:
        with self._cond:
            changed = False
            for allocation_id in allocation_ids:
                if self._fleet_watchers:
                    self._fleet_version += 1
                    changed = True
                if allocation_id in self._versions:
                    self._versions[allocation_id] += 1
                    changed = True
            if changed:
                self._cond.notify_all()

    @contextmanager
    def watching_fleet(self) -> Iterator[None]:
        with self._cond:
            self._fleet_watchers += 1
        try:
            yield
        finally:
            with self._cond:
                self._fleet_watchers -= 1

    def fleet_version(self) -> int:
        with self._cond:
            return self._fleet_version

    def publish_fleet(self) -> None:
        """Nodes or GPUs changed (state, health, registration)."""
        with self._cond:
            if self._fleet_watchers:
                self._fleet_version += 1
                self._cond.notify_all()

    def wait_fleet(self, seen_version: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._fleet_version != seen_version, timeout
            )
            return self._fleet_version

    def publish_all(self) -> None:
        """After a lost notification connection: wake every watcher to re-read."""
        with self._cond:
            for allocation_id in self._versions:
                self._versions[allocation_id] += 1
            self._fleet_version += 1
            self._cond.notify_all()

    def wait(self, allocation_id: str, seen_version: int, timeout: float) -> int:
        """Block until the allocation's version moves past seen_version, or timeout."""
        with self._cond:
            self._cond.wait_for(
                lambda: self._closed or self._versions.get(allocation_id, 0) != seen_version,
                timeout,
            )
            return self._versions.get(allocation_id, 0)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
