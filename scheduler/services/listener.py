"""LISTEN for changes other scheduler replicas made (DESIGN.md principle 5).

Payloads are "kind:replica:ids": alloc (allocation ids changed: wake
watchers), capacity (claims changed on the nodes it names, see
allocator/capacity.py: reload those, and the queue may move; naming none: our
whole snapshot is stale), fleet (nodes changed), cmd (a command for an agent, see
services/relay.py) and log (a log chunk for the replica that asked).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from scheduler.allocator.capacity import CapacityChange, parse_capacity
from scheduler.store.allocations import NOTIFY_CHANNEL

log = logging.getLogger(__name__)


class NotificationListener:
    def __init__(
        self,
        conninfo: str,
        replica_id: str,
        on_allocations: Callable[[list[str]], None],
        on_capacity: Callable[[], None],
        on_reconnect: Callable[[], None],
        on_nodes: Callable[[list[str]], None] = lambda nodes: None,
        on_command: Callable[[int], None] = lambda command_id: None,
        on_log_chunk: Callable[[str], None] = lambda body: None,
        on_fleet: Callable[[list[str]], None] | None = None,
        on_capacity_nodes: Callable[[CapacityChange], None] | None = None,
    ) -> None:
        # Claims changed on named nodes elsewhere: reload just those (issue 17).
        self._on_capacity_nodes = on_capacity_nodes
        # Nodes registered, cordoned, deleted… elsewhere: reload just those
        # (a full reload per hello is what capped a replica's connect rate).
        self._on_fleet = on_fleet
        self._on_command = on_command
        self._on_log_chunk = on_log_chunk
        self._conninfo = conninfo
        self._replica_id = replica_id
        self._on_allocations = on_allocations
        self._on_capacity = on_capacity
        self._on_reconnect = on_reconnect
        self._on_nodes = on_nodes
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listener", daemon=True)
        self._listening = threading.Event()  # the first LISTEN is in place
        self._starter_waiting = False  # start() is waiting for that first LISTEN
        self._lock = threading.Lock()

    def start(self, wait_s: float = 5.0) -> bool:
        """Start listening, waiting up to `wait_s` for the first LISTEN. True when
        it is in place: whatever is loaded after this returns misses no change, so
        that first connection needs no on_reconnect (a second full reload of the
        fleet at start: 8-9 s of a 100,000-GPU allocator). False (the database is
        slow or away): the first connection, when it comes, calls on_reconnect."""
        with self._lock:
            self._starter_waiting = wait_s > 0
        self._thread.start()
        self._listening.wait(wait_s)
        with self._lock:
            self._starter_waiting = False
            return self._listening.is_set()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=5)

    def handle(self, payload: str) -> None:
        kind, _, rest = payload.partition(":")
        replica, _, ids = rest.partition(":")
        if replica == self._replica_id:
            return  # our own change; already applied locally
        if kind == "alloc":
            self._on_allocations([i for i in ids.split(",") if i])
        elif kind == "fleet" and ids and self._on_fleet is not None:
            self._on_fleet([n for n in ids.split(",") if n])
        elif kind == "capacity" and self._on_capacity_nodes is not None:
            change = parse_capacity(ids)
            if change is None:
                self._on_capacity()
            else:
                self._on_capacity_nodes(change)
        elif kind in ("capacity", "fleet"):
            self._on_capacity()
        elif kind == "nodes":
            self._on_nodes([n for n in ids.split(",") if n])
        elif kind in ("cmd", "log"):
            try:  # a relay that fails must not end the listener
                if kind == "cmd" and ids.isdigit():
                    self._on_command(int(ids))
                elif kind == "log":
                    self._on_log_chunk(ids)
            except Exception:
                log.exception("relaying %s failed", kind)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopped.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    with self._lock:
                        # Listening before start() returned: nothing was loaded yet.
                        first = self._starter_waiting and not self._listening.is_set()
                        self._listening.set()
                    if not first:
                        # Anything could have changed while we were not listening.
                        self._on_reconnect()
                    backoff = 0.5
                    while not self._stopped.is_set():
                        for notify in conn.notifies(timeout=1.0):
                            self.handle(notify.payload)
            except psycopg.Error as exc:
                log.warning("notification listener lost its connection: %s", exc)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 10.0)
