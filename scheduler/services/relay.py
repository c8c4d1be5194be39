"""Commands for an agent that streams to another replica (fault injection,
log requests), relayed through PostgreSQL.

An agent holds one stream, to one replica; an admin may ask any replica. The
asking replica writes the command to `agent_commands` and NOTIFYs; the
replica holding the agent's stream claims the row (`queued` → `sent`, one
conditional UPDATE, so exactly one replica delivers it) and pushes it down the
stream. A command nobody claims within RELAY_TIMEOUT_S is marked `failed`
(so it can never be delivered late) and the caller hears that the node's
agent is connected to no replica.

Log chunks travel back as NOTIFY payloads addressed to the asking replica:
logs are an admin's request, rare and small, and nothing is stored.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from sqlalchemy import Engine, text

from scheduler.domain.errors import FailedPrecondition, quoted
from scheduler.services.agents import AgentHub, FaultCommand, LogRequest
from scheduler.store.allocations import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

RELAY_TIMEOUT_S = 3.0
POLL_S = 0.05
# NOTIFY payloads stop at 8000 bytes: base64 of this many bytes fits with its header.
CHUNK_BYTES = 4096

RelayedCommand = FaultCommand | LogRequest
_KINDS: dict[str, type[FaultCommand] | type[LogRequest]] = {
    "fault": FaultCommand,
    "log": LogRequest,
}


def _kind(command: RelayedCommand) -> str:
    return "fault" if isinstance(command, FaultCommand) else "log"


class AgentRelay:
    def __init__(self, engine: Engine, agents: AgentHub, replica_id: str) -> None:
        self._engine = engine
        self._agents = agents
        self._replica_id = replica_id
        # Set by LogRelay: chunks of a log this replica asked another one for,
        # and a log request relayed here whose chunks go back to `reply_to`.
        self.on_log_chunk: Callable[[str, bytes, bool, str], None] = lambda *chunk: None
        self.on_relayed_log: Callable[[str, str], None] = lambda request_id, reply_to: None

    def deliver(self, node: str, command: RelayedCommand) -> None:
        """Push to the node's agent, wherever its stream is; FailedPrecondition
        when no replica holds it."""
        session = self._agents.session_for(node)
        if session is not None and not session.closed:
            session.push(command)
            return
        # A log's chunks come back here: the holder needs to know where to.
        payload = {"command": asdict(command), "reply_to": self._replica_id}
        with self._engine.begin() as conn:
            command_id = conn.execute(
                text(
                    "INSERT INTO agent_commands (node, kind, payload) "
                    "VALUES (:node, :kind, CAST(:payload AS jsonb)) RETURNING id"
                ),
                {"node": node, "kind": _kind(command), "payload": json.dumps(payload)},
            ).scalar_one()
            conn.execute(
                text("SELECT pg_notify(:c, :p)"),
                {"c": NOTIFY_CHANNEL, "p": f"cmd:{self._replica_id}:{command_id}"},
            )
        deadline = time.monotonic() + RELAY_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(POLL_S)
            with self._engine.connect() as conn:
                state = conn.execute(
                    text("SELECT state FROM agent_commands WHERE id = :id"), {"id": command_id}
                ).scalar_one()
            if state != "queued":
                return
        with self._engine.begin() as conn:
            given_up = conn.execute(
                text(
                    "UPDATE agent_commands SET state = 'failed', finished_at = now(), "
                    "error = 'no replica holds the stream' "
                    "WHERE id = :id AND state = 'queued' RETURNING id"
                ),
                {"id": command_id},
            ).first()
        if given_up is not None:
            raise FailedPrecondition(
                f"the agent of node {quoted(node)} is connected to no scheduler replica; "
                "check that it runs (`gpupool nodes` shows it unreachable when it does not)"
            )

    def claim(self, command_id: int) -> None:
        """Another replica queued a command: deliver it if the agent streams here."""
        with self._engine.begin() as conn:
            row = conn.execute(
                text("SELECT node FROM agent_commands WHERE id = :id AND state = 'queued'"),
                {"id": command_id},
            ).first()
            if row is None:
                return
            session = self._agents.session_for(row.node)
            if session is None or session.closed:
                return  # the replica that holds it claims it
            claimed = conn.execute(
                text(
                    "UPDATE agent_commands SET state = 'sent', finished_at = now() "
                    "WHERE id = :id AND state = 'queued' RETURNING kind, payload"
                ),
                {"id": command_id},
            ).first()
        if claimed is None:
            return
        payload: dict[str, Any] = claimed.payload
        command = _KINDS[claimed.kind](**payload["command"])
        if isinstance(command, LogRequest) and not command.cancel:
            self.on_relayed_log(command.request_id, str(payload["reply_to"]))
        session.push(command)
        log.info("relayed a %s command to %s", claimed.kind, row.node)

    def send_log_chunk(
        self, to_replica: str, request_id: str, data: bytes, eof: bool, error: str
    ) -> None:
        """A chunk of a log another replica asked for, in NOTIFY-sized pieces."""
        pieces = [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]
        payloads = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            flag = "1" if eof and last else "0"
            message = base64.b64encode((error if last else "").encode()).decode()
            body = base64.b64encode(piece).decode()
            payloads.append(
                f"log:{self._replica_id}:{to_replica}|{request_id}|{flag}|{message}|{body}"
            )
        with self._engine.begin() as conn:
            conn.execute(
                text("SELECT pg_notify(:c, p) FROM unnest(CAST(:ps AS text[])) AS p"),
                {"c": NOTIFY_CHANNEL, "ps": payloads},
            )

    def received_log_chunk(self, body: str) -> None:
        """A NOTIFY'd chunk; only the replica it is addressed to takes it."""
        to_replica, request_id, flag, message, data = body.split("|")
        if to_replica != self._replica_id:
            return
        self.on_log_chunk(
            request_id,
            base64.b64decode(data),
            flag == "1",
            base64.b64decode(message).decode(),
        )
