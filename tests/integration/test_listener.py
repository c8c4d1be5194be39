"""The notification listener's connections: the first one, and those after a loss."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psycopg

from scheduler.app import SchedulerApp
from scheduler.services.listener import NotificationListener
from scheduler.store.database import libpq_url


def _listener(url: str, reconnects: threading.Event) -> NotificationListener:
    return NotificationListener(
        libpq_url(url),
        "replica-under-test",
        on_allocations=lambda ids: None,
        on_capacity=lambda: None,
        on_reconnect=reconnects.set,
    )


def _terminate_listeners(url: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%' "
            "AND pid <> pg_backend_pid()"
        )


def test_a_listener_in_place_before_start_returns_reloads_nothing_until_it_loses_the_line(
    clean_database: str,
) -> None:
    """start() waits for the first LISTEN, so what loads after it misses no change:
    that first connection calls no on_reconnect (a second full reload of the
    fleet at every start). A connection it lost and got back does."""
    reconnects = threading.Event()
    listener = _listener(clean_database, reconnects)
    try:
        assert listener.start(wait_s=10.0), "listening when start() returned"
        assert not reconnects.wait(0.5), "the first connection is no reconnect"
        _terminate_listeners(clean_database)
        assert reconnects.wait(15.0), "a lost connection, back again, reloads"
    finally:
        listener.stop()


def test_a_listener_not_waited_for_treats_its_first_connection_as_a_reconnect(
    clean_database: str,
) -> None:
    """Without the wait, something may have loaded before the first LISTEN: its
    first connection must then say that anything could have changed."""
    reconnects = threading.Event()
    listener = _listener(clean_database, reconnects)
    try:
        listener.start(wait_s=0)
        assert reconnects.wait(10.0), "the first connection asked for a reload"
    finally:
        listener.stop()


def test_a_leader_retries_the_pending_queue_as_it_starts(
    start_app: Callable[[], SchedulerApp],
) -> None:
    """A replica that starts as leader runs a pending pass at once: what waited
    while no replica ran may fit now. (Its listener's first connection used to
    ask for it; it no longer asks for anything.)"""
    app = start_app()
    assert app.leader.is_leader
    deadline = time.monotonic() + 10
    while app.allocator.passes_run == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.allocator.passes_run >= 1, "no pending pass at start"
