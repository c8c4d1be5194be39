"""Transport for the CLI: one channel, typed calls, gRPC errors as one-line CLI errors.

Rendering lives in render.py; this module only dials, calls and translates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from types import TracebackType
from typing import IO, Any

import click
import grpc

from gpupool.v1 import admin_pb2, admin_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc, types_pb2
from scheduler.security.channels import ClientCredentials, open_channel

CALL_TIMEOUT_S = 10.0
# The server caps page_size at 1000 (scheduler.proto).
MAX_PAGE_SIZE = 1000
# The server answers at most this many items of one AllocateMany or ReleaseMany.
MAX_BATCH_ITEMS = 1000
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2

# Codes that mean "no answer from the scheduler" rather than "the scheduler said no".
_UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class CliError(click.ClickException):
    """Shown as a single `error: ...` line on stderr, never as a traceback."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class SchedulerUnreachable(CliError):
    """No answer from the scheduler, as opposed to an answer that says no."""

    exit_code = EXIT_UNREACHABLE


def _one_line(text: str) -> str:
    # gRPC details can span lines (e.g. connection errors); the CLI promises one.
    return " ".join(text.split())


def translate_rpc_error(error: grpc.RpcError, target: str) -> CliError:
    """Map a failed call to the message and exit code the user sees."""
    if not isinstance(error, grpc.Call):
        return CliError(_one_line(str(error)) or "call failed")
    code = error.code()
    details = _one_line(error.details() or "") or code.name.lower().replace("_", " ")
    if code in _UNREACHABLE_CODES:
        return SchedulerUnreachable(f"cannot reach the scheduler at {target} ({details})")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return CliError(f"{details} (see `gpupool --help` for where credentials come from)")
    return CliError(details)


class SchedulerClient:
    """The Admin and Scheduler services behind one channel, with typed results."""

    def __init__(
        self, target: str, credentials: ClientCredentials, timeout_s: float = CALL_TIMEOUT_S
    ) -> None:
        self.target = target
        self._timeout_s = timeout_s
        self._channel = open_channel(target, credentials)
        self._admin = admin_pb2_grpc.AdminStub(self._channel)  # type: ignore[no-untyped-call]
        self._scheduler = scheduler_pb2_grpc.SchedulerStub(self._channel)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> SchedulerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except grpc.RpcError as error:
            raise translate_rpc_error(error, self.target) from None

    def _unary(self, method: Any, request: Any) -> Any:
        # wait_for_ready=False: a down scheduler fails now instead of at the deadline.
        with self._errors():
            return method(request, timeout=self._timeout_s, wait_for_ready=False)

    # --- Admin ---------------------------------------------------------------

    def list_nodes(self) -> list[types_pb2.Node]:
        response: admin_pb2.ListNodesResponse = self._unary(
            self._admin.ListNodes, admin_pb2.ListNodesRequest()
        )
        return list(response.nodes)

    def get_node(self, name: str) -> types_pb2.Node:
        response: admin_pb2.GetNodeResponse = self._unary(
            self._admin.GetNode, admin_pb2.GetNodeRequest(name=name)
        )
        return response.node

    def list_gpus(self, node: str = "") -> list[types_pb2.Gpu]:
        response: admin_pb2.ListGpusResponse = self._unary(
            self._admin.ListGpus, admin_pb2.ListGpusRequest(node=node)
        )
        return list(response.gpus)

    def list_allocations(
        self,
        *,
        tenant: str = "",
        state: types_pb2.AllocationState = types_pb2.ALLOCATION_STATE_UNSPECIFIED,
        node: str = "",
        limit: int = 100,
        request_id: str = "",
    ) -> list[types_pb2.Allocation]:
        """Follow next_page_token until `limit` allocations or the last page."""
        found: list[types_pb2.Allocation] = []
        token = ""
        while len(found) < limit:
            request = scheduler_pb2.ListAllocationsRequest(
                tenant=tenant,
                state=state,
                node=node,
                page_size=min(limit - len(found), MAX_PAGE_SIZE),
                page_token=token,
                request_id=request_id,
            )
            response: scheduler_pb2.ListAllocationsResponse = self._unary(
                self._admin.ListAllocations, request
            )
            found.extend(response.allocations)
            token = response.next_page_token
            # An empty page with a token would loop forever; treat it as the end.
            if not token or not response.allocations:
                break
        return found[:limit]

    def get_allocation(self, allocation_id: str) -> types_pb2.Allocation:
        response: scheduler_pb2.GetAllocationResponse = self._unary(
            self._admin.GetAllocation,
            scheduler_pb2.GetAllocationRequest(allocation_id=allocation_id),
        )
        return response.allocation

    def release_allocation(self, allocation_id: str) -> types_pb2.Allocation:
        response: scheduler_pb2.ReleaseResponse = self._unary(
            self._admin.ReleaseAllocation,
            scheduler_pb2.ReleaseRequest(allocation_id=allocation_id),
        )
        return response.allocation

    def preempt(self, allocation_id: str, grace_seconds: int) -> types_pb2.Allocation:
        request = admin_pb2.PreemptRequest(allocation_id=allocation_id, grace_seconds=grace_seconds)
        response: admin_pb2.PreemptResponse = self._unary(self._admin.Preempt, request)
        return response.allocation

    def list_queue(self, limit: int) -> list[types_pb2.Allocation]:
        request = admin_pb2.ListQueueRequest(limit=limit)
        response: admin_pb2.ListQueueResponse = self._unary(self._admin.ListQueue, request)
        return list(response.allocations)

    def list_models(self, model: str = "") -> list[admin_pb2.ModelInfo]:
        request = admin_pb2.ListModelsRequest(model=model)
        response: admin_pb2.ListModelsResponse = self._unary(self._admin.ListModels, request)
        return list(response.models)

    def list_tenants(self) -> list[admin_pb2.Tenant]:
        response: admin_pb2.ListTenantsResponse = self._unary(
            self._admin.ListTenants, admin_pb2.ListTenantsRequest()
        )
        return list(response.tenants)

    def set_tenant_quota(self, name: str, quota_units: float, weight: float) -> admin_pb2.Tenant:
        request = admin_pb2.SetTenantQuotaRequest(name=name, quota_units=quota_units, weight=weight)
        response: admin_pb2.SetTenantQuotaResponse = self._unary(
            self._admin.SetTenantQuota, request
        )
        return response.tenant

    def interrupt_node(self, name: str, in_seconds: int) -> admin_pb2.InterruptNodeResponse:
        request = admin_pb2.InterruptNodeRequest(name=name, in_seconds=in_seconds)
        response: admin_pb2.InterruptNodeResponse = self._unary(self._admin.InterruptNode, request)
        return response

    def delete_node(self, name: str, force: bool = False) -> admin_pb2.DeleteNodeResponse:
        request = admin_pb2.DeleteNodeRequest(name=name, force=force)
        response: admin_pb2.DeleteNodeResponse = self._unary(self._admin.DeleteNode, request)
        return response

    def cordon_node(self, name: str) -> types_pb2.Node:
        return self._node_action(self._admin.CordonNode, name)

    def uncordon_node(self, name: str) -> types_pb2.Node:
        return self._node_action(self._admin.UncordonNode, name)

    def drain_node(self, name: str) -> types_pb2.Node:
        return self._node_action(self._admin.DrainNode, name)

    def _node_action(self, method: Any, name: str) -> types_pb2.Node:
        response: admin_pb2.NodeActionResponse = self._unary(
            method, admin_pb2.NodeActionRequest(name=name)
        )
        return response.node

    def inject_fault(self, node: str, gpu_index: int, fault: str, clear: bool) -> None:
        request = admin_pb2.InjectFaultRequest(
            node=node, gpu_index=gpu_index, fault=fault, clear=clear
        )
        self._unary(self._admin.InjectFault, request)

    def get_catalogue(self) -> list[types_pb2.GpuModel]:
        response: admin_pb2.GetCatalogueResponse = self._unary(
            self._admin.GetCatalogue, admin_pb2.GetCatalogueRequest()
        )
        return list(response.models)

    def worker_logs(
        self, allocation_id: str, rank: int, tail_bytes: int, follow: bool
    ) -> Iterator[bytes]:
        """A worker's log as its agent streams it; with follow, until interrupted."""
        request = admin_pb2.WorkerLogsRequest(
            allocation_id=allocation_id, rank=rank, tail_bytes=tail_bytes, follow=follow
        )
        timeout = None if follow else self._timeout_s * 6
        stream = self._admin.WorkerLogs(request, timeout=timeout, wait_for_ready=False)
        try:
            with self._errors():
                for chunk in stream:
                    yield chunk.data
        finally:
            stream.cancel()  # type: ignore[no-untyped-call]

    def watch_fleet(self, queue_limit: int, events_limit: int) -> Any:
        """The WatchFleet stream (iterate it; cancel() ends it)."""
        request = admin_pb2.WatchFleetRequest(queue_limit=queue_limit, events_limit=events_limit)
        return self._admin.WatchFleet(request, wait_for_ready=False)

    def set_tenant_priority_classes(
        self, name: str, classes: list[str], reset: bool
    ) -> admin_pb2.Tenant:
        request = admin_pb2.SetTenantPriorityClassesRequest(
            name=name, priority_classes=classes, reset=reset
        )
        response: admin_pb2.SetTenantPriorityClassesResponse = self._unary(
            self._admin.SetTenantPriorityClasses, request
        )
        return response.tenant

    def create_token(
        self, name: str, role: admin_pb2.TokenRole, tenant: str, ttl_seconds: int
    ) -> admin_pb2.CreateTokenResponse:
        request = admin_pb2.CreateTokenRequest(
            name=name, role=role, tenant=tenant, ttl_seconds=ttl_seconds
        )
        response: admin_pb2.CreateTokenResponse = self._unary(self._admin.CreateToken, request)
        return response

    def list_tokens(self, tenant: str, include_revoked: bool) -> list[admin_pb2.Token]:
        request = admin_pb2.ListTokensRequest(tenant=tenant, include_revoked=include_revoked)
        response: admin_pb2.ListTokensResponse = self._unary(self._admin.ListTokens, request)
        return list(response.tokens)

    def revoke_token(self, token_id: str) -> admin_pb2.Token:
        request = admin_pb2.RevokeTokenRequest(id=token_id)
        response: admin_pb2.RevokeTokenResponse = self._unary(self._admin.RevokeToken, request)
        return response.token

    def list_audit_events(
        self, since: datetime | None, actor: str, tenant: str, node: str, limit: int
    ) -> list[admin_pb2.AuditEvent]:
        request = admin_pb2.ListAuditEventsRequest(
            actor=actor, tenant=tenant, node=node, limit=limit
        )
        if since is not None:
            request.since.FromDatetime(since)
        response: admin_pb2.ListAuditEventsResponse = self._unary(
            self._admin.ListAuditEvents, request
        )
        return list(response.events)

    # --- Scheduler -----------------------------------------------------------

    def allocate(self, request: scheduler_pb2.AllocateRequest) -> types_pb2.Allocation:
        response: scheduler_pb2.AllocateResponse = self._unary(self._scheduler.Allocate, request)
        return response.allocation

    def allocate_many(
        self, requests: list[scheduler_pb2.AllocateRequest]
    ) -> list[scheduler_pb2.AllocateResult]:
        """One result per request, in order: its allocation or its own error
        (at most MAX_BATCH_ITEMS requests a call)."""
        request = scheduler_pb2.AllocateManyRequest(requests=requests)
        response: scheduler_pb2.AllocateManyResponse = self._unary(
            self._scheduler.AllocateMany, request
        )
        return list(response.results)

    def release_many(self, allocation_ids: list[str]) -> list[scheduler_pb2.ReleaseResult]:
        """One result per id, in order (at most MAX_BATCH_ITEMS ids a call)."""
        request = scheduler_pb2.ReleaseManyRequest(allocation_ids=allocation_ids)
        response: scheduler_pb2.ReleaseManyResponse = self._unary(
            self._scheduler.ReleaseMany, request
        )
        return list(response.results)

    def watch_allocation(
        self, allocation_id: str
    ) -> Iterator[scheduler_pb2.WatchAllocationResponse]:
        """Updates until the server ends the stream (after a terminal state)."""
        request = scheduler_pb2.WatchAllocationRequest(allocation_id=allocation_id)
        # No deadline: a watch lasts as long as the allocation does.
        stream = self._scheduler.WatchAllocation(request, wait_for_ready=False)
        try:
            with self._errors():
                yield from stream
        finally:
            # Stops the server-side stream when the caller gives up early (Ctrl-C).
            stream.cancel()  # type: ignore[no-untyped-call]
