"""gpupool.v1.Router: a thin layer over RoutingService."""

from __future__ import annotations

import grpc

from gpupool.v1 import router_pb2 as pb
from gpupool.v1 import router_pb2_grpc
from scheduler.api.interceptor import current_caller
from scheduler.routing.service import Routed, RouteQuery, RoutingService


def query_of(request: pb.RouteRequest) -> RouteQuery:
    return RouteQuery(
        deployment=request.deployment,
        tenant=request.tenant,
        prompt_tokens=request.prompt_tokens,
        blocks=list(request.prompt_blocks),
        block_tokens=request.block_tokens,
        max_tokens=request.max_tokens,
        session=request.session,
        policy=request.policy,
    )


def route_message(routed: Routed) -> pb.RouteResponse:
    decision = routed.decision
    return pb.RouteResponse(
        replica=decision.replica or "",
        endpoint=routed.endpoint,
        policy=decision.policy,
        reason=decision.reason,
        candidates=[
            pb.ReplicaScores(replica=replica, scores=scores)
            for replica, scores in decision.scores.items()
        ],
        ticket=routed.ticket,
        expected_cached_tokens=routed.cached_tokens,
        header=decision.header(),
    )


class RouterServicer(router_pb2_grpc.RouterServicer):
    def __init__(self, routing: RoutingService) -> None:
        self._routing = routing

    def Route(self, request: pb.RouteRequest, context: grpc.ServicerContext) -> pb.RouteResponse:
        return route_message(self._routing.route(current_caller(), query_of(request)))

    def Explain(self, request: pb.RouteRequest, context: grpc.ServicerContext) -> pb.RouteResponse:
        return route_message(self._routing.explain(current_caller(), query_of(request)))

    def Complete(
        self, request: pb.CompleteRequest, context: grpc.ServicerContext
    ) -> pb.CompleteResponse:
        self._routing.complete(
            current_caller(),
            request.deployment,
            request.tenant,
            request.ticket,
            request.output_tokens,
            request.replica_failed,
        )
        return pb.CompleteResponse()
