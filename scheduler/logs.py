"""Log set-up for the scheduler and the agent: text or JSON lines, quiet libraries.

Libraries (APScheduler's "Running job" every tick, gRPC, SQLAlchemy,
alembic, psycopg) log at WARNING unless asked otherwise, so what is left
is gpupool's own lines: one per state change of an allocation, node or GPU
(logger `gpupool.events`), each carrying its ids as fields that the JSON
format writes as keys.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sys
from datetime import UTC, datetime
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
LIBRARY_LOGGERS = (
    "apscheduler",
    "grpc",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "urllib3",
    "pgserver",
    "matplotlib",
    "PIL",
)
# Fields of `extra=` that a JSON line carries as keys (and text appends).
EVENT_FIELDS = ("allocation_id", "tenant", "node", "gpu", "gpu_uuid", "state", "was", "seq")

events = logging.getLogger("gpupool.events")
_listener: QueueListener | None = None


class _ThreadQueueHandler(QueueHandler):
    """Hands records to the writer thread as they are: formatting and the write
    happen there. The allocator logs every state change it commits; a write in
    its own thread gives up the GIL and waits to get it back (ms under load).
    Arguments are formatted there too, later: log values, not objects that change."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # same process: nothing to make picklable


def stop_logging() -> None:
    """Write what is queued and end the writer thread (also at exit)."""
    global _listener
    if _listener is not None:
        _listener.stop()  # writes what is queued, then ends the thread
        _listener = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the ids."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in EVENT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(
    log_format: str = "text",
    level: str = "INFO",
    library_level: str = "WARNING",
    stream: TextIO | None = None,
    file: Path | None = None,
) -> None:
    """Replace the root logger's handlers with one writing `log_format` to
    `file` (appending) or `stream` (stderr), from a thread of its own (at exit
    it writes what is left)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    global _listener
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    listener = QueueListener(records, handler)
    listener.start()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_ThreadQueueHandler(records))
    stop_logging()  # the previous writer, if any, after what it was handed
    _listener = listener
    atexit.unregister(stop_logging)  # registered once, however often this runs
    atexit.register(stop_logging)
    root.setLevel(level.upper())
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(library_level.upper())


def allocation_changed(
    allocation_id: str, seq: int, state: str, message: str, tenant: str | None = None
) -> None:
    events.info(
        "allocation %s -> %s: %s",
        allocation_id,
        state,
        message,
        extra={"allocation_id": allocation_id, "seq": seq, "state": state, "tenant": tenant},
    )


def node_changed(node: str, was: str, state: str, why: str = "") -> None:
    events.info(
        "node %s %s -> %s%s",
        node,
        was,
        state,
        f": {why}" if why else "",
        extra={"node": node, "was": was, "state": state},
    )


def gpu_changed(node: str, index: int, uuid: str, was: str, state: str, why: str = "") -> None:
    events.info(
        "GPU %s:%d (%s) %s -> %s%s",
        node,
        index,
        uuid,
        was,
        state,
        f": {why}" if why else "",
        extra={"node": node, "gpu": index, "gpu_uuid": uuid, "was": was, "state": state},
    )
