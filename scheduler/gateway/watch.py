"""The scheduler's `Deployments.WatchReplicas` stream as a ReplicaSource.

Reconnects with backoff when the stream breaks; every (re)connect starts
with `Resync`, then the full snapshot and `Synced`, so replicas that went
away while the stream was down are dropped (level-triggered, as agents do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import grpc

from gpupool.v1 import deployments_pb2 as pb
from gpupool.v1 import deployments_pb2_grpc as pb_grpc
from scheduler.gateway.replicas import ReplicaUpdate, Resync, SourceEvent, Synced
from scheduler.routing.view import EngineMetrics
from scheduler.security.channels import ClientCredentials, open_aio_channel

log = logging.getLogger(__name__)

_STATES = {
    pb.REPLICA_STATE_STARTING: "starting",
    pb.REPLICA_STATE_READY: "ready",
    pb.REPLICA_STATE_STANDBY: "standby",
    pb.REPLICA_STATE_DRAINING: "draining",
    pb.REPLICA_STATE_STOPPED: "stopped",
}
MAX_BACKOFF_S = 10.0


def replica_update(replica: pb.Replica) -> ReplicaUpdate:
    metrics = None
    if replica.HasField("metrics"):
        m = replica.metrics
        metrics = EngineMetrics(m.kv_cache_usage, m.num_requests_running, m.num_requests_waiting)
    return ReplicaUpdate(
        id=replica.id,
        deployment=replica.deployment,
        tenant=replica.tenant,
        state=_STATES.get(replica.state, "starting"),
        endpoint=replica.endpoint,
        model=replica.model,
        variant=replica.variant,
        gpu_model=replica.gpu_model,
        gpu_count=replica.gpu_count or 1,
        metrics=metrics,
        routing=replica.routing,
    )


class WatchReplicaSource:
    def __init__(
        self, target: str, credentials: ClientCredentials, deployment: str = "", tenant: str = ""
    ) -> None:
        self._target = target
        self._credentials = credentials
        self._request = pb.WatchReplicasRequest(deployment=deployment, tenant=tenant)

    async def events(self) -> AsyncIterator[SourceEvent]:
        backoff = 0.5
        while True:
            channel = open_aio_channel(self._target, self._credentials)
            try:
                stub = pb_grpc.DeploymentsStub(channel)
                yield Resync()
                async for event in stub.WatchReplicas(self._request):
                    backoff = 0.5
                    if event.synced:
                        yield Synced()
                    elif event.HasField("replica"):
                        yield replica_update(event.replica)
            except grpc.aio.AioRpcError as exc:
                log.warning("replica watch on %s broke (%s: %s); reconnecting in %.1f s",
                            self._target, exc.code().name, exc.details(), backoff)  # fmt: skip
            finally:
                await channel.close(grace=None)
            await asyncio.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
