"""Log set-up: lines are written off the caller's thread, and none is lost at the end."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from scheduler.logs import allocation_changed, configure_logging, stop_logging


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    yield
    stop_logging()
    root.handlers[:] = saved
    root.setLevel(level)


def test_json_lines_are_written_by_another_thread_and_flushed_at_stop(
    root_handlers: None,
) -> None:
    written_by: list[str] = []

    class Stream(io.StringIO):
        def write(self, text: str) -> int:
            written_by.append(threading.current_thread().name)
            return super().write(text)

    stream = Stream()
    configure_logging("json", stream=stream)
    for seq in range(1, 51):
        allocation_changed("a-1", seq, "placed", "on node-1", tenant="team-a")
    stop_logging()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == list(range(1, 51)), "every line, in order"
    assert lines[0]["allocation_id"] == "a-1" and lines[0]["tenant"] == "team-a"
    assert threading.current_thread().name not in written_by
