"""The leader lease and its epoch: one leader at a time, a clean hand-over,
and a paused ex-leader that cannot act after another replica took over."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine

from scheduler.app import SchedulerApp
from scheduler.background.leader import LeaderLease
from scheduler.domain.errors import LeaseLost


class FrozenClock:
    """A monotonic clock that moves only when told: a paused process's view."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(clean_database: str) -> Iterator[Engine]:
    engine = create_engine(clean_database.replace("postgresql://", "postgresql+psycopg://", 1))
    yield engine
    engine.dispose()


def _expire(engine: Engine) -> None:
    """The lease ran out (its holder stopped renewing) without waiting for it."""
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE leader_lease SET expires_at = now() - interval '1 second'")


def test_one_leader_and_epochs_rise_on_takeover(engine: Engine) -> None:
    first, second = LeaderLease(engine, "a"), LeaderLease(engine, "b")
    assert first.run_once() and first.epoch is not None
    assert not second.run_once(), "the lease is held"
    assert first.run_once(), "the holder renews"
    epoch = first.epoch
    _expire(engine)
    assert second.run_once()
    assert second.epoch == epoch + 1
    assert not first.run_once(), "renewing an expired lease someone else took fails"
    assert not first.is_leader


def test_a_paused_ex_leader_is_fenced(engine: Engine) -> None:
    paused_clock = FrozenClock()
    paused = LeaderLease(engine, "paused", monotonic=paused_clock)
    assert paused.run_once()
    _expire(engine)  # it was paused past its lease ...
    assert LeaderLease(engine, "new").run_once()  # ... and another replica took over
    assert paused.is_leader, "by its own frozen clock it still believes it leads"
    with engine.begin() as conn, pytest.raises(LeaseLost):
        paused.fence(conn)
    assert not paused.is_leader, "a failed fence ends its leadership at once"


def test_fence_holds_the_row_until_commit(engine: Engine) -> None:
    leader = LeaderLease(engine, "a")
    assert leader.run_once()
    with engine.begin() as conn:
        assert leader.fence(conn) == leader.epoch
        # A takeover now would have to wait for this transaction: the row is
        # held FOR SHARE, so another replica cannot raise the epoch under it.
        with engine.connect() as other:
            other.exec_driver_sql("SET lock_timeout = '100ms'")
            with pytest.raises(Exception, match="lock timeout"):
                other.exec_driver_sql("UPDATE leader_lease SET epoch = epoch + 1")


def test_close_hands_over_at_once(engine: Engine) -> None:
    first, second = LeaderLease(engine, "a"), LeaderLease(engine, "b")
    assert first.run_once()
    first.close()
    assert second.run_once(), "a released lease is free without waiting for its expiry"


def test_a_stale_leaders_allocator_places_nothing_from_the_queue(
    start_app: Callable[[], SchedulerApp],
) -> None:
    app = start_app()
    assert app.leader.is_leader
    _expire(app.engine)
    assert LeaderLease(app.engine, "usurper").run_once()
    # The allocator still believes it leads (its lease has not run out by its
    # own clock); its pass is fenced in the transaction, and places nothing.
    assert app.allocator.place_pending() == 0
    assert not app.leader.is_leader
    with pytest.raises(LeaseLost):
        app.allocator.requeue(["a-0000000000000000"], "node unreachable", leader_only=True)


def test_loops_see_leadership_only_after_on_elected_ran(engine: Engine) -> None:
    """A loop on another thread that sees is_leader must also see what
    on_elected set up (liveness's grace after a takeover), or it judges every
    node silent with the old leader's stale heartbeats."""
    lease = LeaderLease(engine, "a")
    seen: list[bool] = []
    lease.on_elected = lambda epoch: seen.append(lease.is_leader)
    assert lease.run_once()
    assert seen == [False]
    assert lease.is_leader
