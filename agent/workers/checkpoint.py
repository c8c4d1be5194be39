"""Asking a worker to checkpoint through the hook its template declares.

Contract (README "Running workers"): the agent sends one JSON line
{"action": "checkpoint", "deadline": <epoch seconds>, "allocation_id": …,
"ranks": [...]} on the worker's UNIX socket (or POSTs it to its HTTP
endpoint) and reads one JSON reply {"checkpoint_uri": "…"} (or {"error": …}).
"""

from __future__ import annotations

import json
import logging
import socket
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agent.workers.gang import GangSpec
from agent.workers.process import WorkerProcess
from scheduler.domain.worker_templates import WorkerTemplate, substitute

log = logging.getLogger(__name__)

_MAX_REPLY = 1 << 20


@dataclass(frozen=True)
class CheckpointResult:
    uri: str = ""
    error: str = ""


def _request(allocation_id: str, ranks: tuple[int, ...], deadline: float) -> dict[str, Any]:
    return {
        "action": "checkpoint",
        "deadline": deadline,
        "allocation_id": allocation_id,
        "ranks": list(ranks),
    }


def _result(reply: bytes) -> CheckpointResult:
    try:
        body = json.loads(reply.decode() or "{}")
    except ValueError:
        return CheckpointResult(error=f"not JSON: {reply[:200]!r}")
    if not isinstance(body, dict):
        return CheckpointResult(error="reply is not a JSON object")
    return CheckpointResult(str(body.get("checkpoint_uri", "")), str(body.get("error", "")))


def via_socket(
    path: str, allocation_id: str, ranks: tuple[int, ...], deadline: float
) -> CheckpointResult:
    """Connect (retrying until the deadline: the worker may still be binding)."""
    line = json.dumps(_request(allocation_id, ranks, deadline)).encode() + b"\n"
    last_error = "no socket"
    while time.time() < deadline:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(max(0.1, deadline - time.time()))
                conn.connect(path)
                conn.sendall(line)
                reply = b""
                while not reply.endswith(b"\n") and len(reply) < _MAX_REPLY:
                    data = conn.recv(65536)
                    if not data:
                        break
                    reply += data
                return _result(reply)
        except OSError as exc:
            last_error = str(exc)
            time.sleep(0.2)
    return CheckpointResult(error=f"no answer on {path} by the deadline ({last_error})")


def via_http(
    url: str, allocation_id: str, ranks: tuple[int, ...], deadline: float
) -> CheckpointResult:
    body = json.dumps(_request(allocation_id, ranks, deadline)).encode()
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=max(0.1, deadline - time.time())) as reply:
            return _result(reply.read(_MAX_REPLY))
    except OSError as exc:
        return CheckpointResult(error=f"POST {url}: {exc}")


def ask_workers(
    procs: Sequence[WorkerProcess], spec: GangSpec, template: WorkerTemplate
) -> dict[int, str]:
    """Signal each local worker, then ask it over its hook; first rank -> URI
    ("" where it gave none by the preemption deadline)."""
    hook = template.checkpoint
    deadline = spec.preemption_deadline or time.time() + 30
    uris: dict[int, str] = {}
    if hook is None:
        return uris
    for proc in procs:
        if hook.signal_number is not None:
            proc.signal(hook.signal_number)
        ranks = proc.launch.ranks
        values = {
            **template.optional_args,
            **spec.args,
            "checkpoint_socket": proc.launch.checkpoint_socket,
            "allocation_id": spec.allocation_id,
            "rank": str(ranks[0]),
        }
        if hook.socket:
            result = via_socket(
                substitute(hook.socket, values), spec.allocation_id, ranks, deadline
            )
        elif hook.http:
            result = via_http(substitute(hook.http, values), spec.allocation_id, ranks, deadline)
        else:
            continue
        if result.error:
            log.warning("checkpoint of %s rank %s: %s", spec.allocation_id, ranks, result.error)
        uris[ranks[0]] = result.uri
    return uris
