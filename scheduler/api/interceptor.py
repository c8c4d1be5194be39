"""The one server interceptor: who is calling, may they, is the request
well-formed, and what status does the answer carry.

For every call: authenticate (client certificate on the agent port, bearer
token on the API port, or the anonymous admin of an --insecure server),
check the role against api/access.RULES, validate the request message at
the edge, run the servicer with the Caller in a context variable, map
domain errors to status codes, and record state-changing calls in the
audit log. Anything unexpected is logged with a request id and answered
INTERNAL with only that id: no traceback, SQL or address reaches a client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Protocol

import grpc
from google.protobuf.message import Message

from scheduler.api.access import AUDITED, PUBLIC_PREFIXES, RULES, roles_needed, short_name
from scheduler.api.errors import status_of
from scheduler.domain import errors
from scheduler.domain.callers import Caller, Role
from scheduler.metrics.instruments import API_LATENCY
from scheduler.security.pki import parse_identity
from scheduler.services.audit import AuditLog

log = logging.getLogger(__name__)

_current: ContextVar[Caller] = ContextVar("gpupool_caller")

Authenticate = Callable[[str, str], Caller]  # (bearer token, peer) -> Caller
Validate = Callable[[Message], None]
_TARGET_FIELDS = ("allocation_id", "name", "node", "id", "tenant")


def current_caller() -> Caller:
    """The caller of the RPC this thread serves (set by the interceptor)."""
    return _current.get()


def set_current_caller(caller: Caller) -> None:
    """For the aio interceptor: the caller of the call this task or thread serves."""
    _current.set(caller)


class CallContext(Protocol):
    """What authentication reads of a call: the sync and the aio
    ServicerContext both have it."""

    def peer(self) -> str: ...

    def auth_context(self) -> Mapping[str, Any]: ...

    def invocation_metadata(self) -> Any: ...


def _target(request: Any, response: Any) -> str:
    allocation_id: object = getattr(getattr(response, "allocation", None), "id", "")
    if isinstance(allocation_id, str) and allocation_id:
        return allocation_id
    for name in _TARGET_FIELDS:
        value = getattr(request, name, None)
        if isinstance(value, str) and value:
            return value
    return ""


class CallGuard:
    """What every server interceptor does around a call, whatever its server
    (the sync one here, grpc.aio's in api/aio_interceptor.py): who is
    calling, may they, is the request well-formed, and what status and audit
    record a call's outcome gives. It never aborts: each server aborts its
    own way (the aio context's abort is a coroutine)."""

    def __init__(
        self,
        authenticate_token: Authenticate,
        audit: AuditLog | None,
        validate: Validate,
        insecure: bool = False,
    ) -> None:
        self._authenticate_token = authenticate_token
        self._audit = audit
        self.validate = validate
        self._insecure = insecure

    # -- who is calling --------------------------------------------------------

    def authenticate(self, method: str, context: CallContext) -> Caller:
        """Who is calling (Unauthenticated if that cannot be told)."""
        peer = context.peer()
        if self._insecure:
            return Caller(name="anonymous", role=Role.ADMIN, credential="insecure", peer=peer)
        found: bytes | list[bytes] = context.auth_context().get("x509_subject_alternative_name", [])
        sans = [found] if isinstance(found, bytes) else list(found)
        if sans:
            return self._certificate_caller(sans, peer)
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str):
                scheme, _, token = value.partition(" ")
                if scheme.lower() != "bearer":
                    raise errors.Unauthenticated(
                        "the authorization header must be 'Bearer <token>'"
                    )
        if not token:
            raise errors.Unauthenticated(
                f"{short_name(method)} needs credentials: a bearer token "
                "(gpupool token create) or a client certificate on the agent port"
            )
        return self._authenticate_token(token.strip(), peer)

    @staticmethod
    def _certificate_caller(sans: list[bytes], peer: str) -> Caller:
        for raw in sans:
            identity = parse_identity(raw.decode(errors="replace"))
            if identity is None:
                continue
            if identity.kind == "node":
                return Caller(
                    name=identity.name,
                    role=Role.AGENT,
                    node=identity.name,
                    credential="certificate",
                    peer=peer,
                )
            return Caller(name=identity.name, role=Role.ADMIN, credential="certificate", peer=peer)
        raise errors.Unauthenticated(
            "the client certificate names no gpupool identity "
            "(a URI SAN spiffe://gpupool/node/<node> or spiffe://gpupool/admin/<name>)"
        )

    @staticmethod
    def authorise(method: str, caller: Caller) -> None:
        """PermissionDenied unless the caller's role may call `method`."""
        roles = RULES.get(method)
        if roles is None:
            raise errors.PermissionDenied(f"{short_name(method)} is not open to any caller")
        if caller.role not in roles:
            raise errors.PermissionDenied(
                f"{short_name(method)} needs role {roles_needed(roles)}; "
                f"the caller is {caller.describe()}"
            )

    # -- answers ---------------------------------------------------------------

    def conclude(
        self,
        method: str,
        caller: Caller | None,
        peer: str,
        request: Any,
        response: Any,
        exc: BaseException | None,
    ) -> tuple[grpc.StatusCode, str]:
        """Audit the call; the status it ends with (OK when exc is None)."""
        code, message = (grpc.StatusCode.OK, "") if exc is None else status_of(exc)
        if self._audit is not None and method in AUDITED:
            who = caller or Caller(name="unauthenticated", role=Role.VIEWER, peer=peer)
            self._audit.record(
                who, short_name(method), _target(request, response), code.name, message
            )
        return code, message

    def keep_stream_message(self, n: int, request: Any) -> bool:
        """The first message (an agent's hello) must be valid or the stream
        fails (raises); a bad later one is dropped (False) and logged: ending
        the stream would only bring the same agent back with the same report."""
        try:
            self.validate(request)
        except errors.InvalidArgument as exc:
            if n == 0:
                raise
            log.warning("dropped an invalid stream message: %s", exc.message)
            return False
        return True


class ApiInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """The sync server's interceptor: CallGuard around every handler."""

    def __init__(
        self,
        authenticate_token: Authenticate,
        audit: AuditLog | None,
        validate: Validate,
        insecure: bool = False,
    ) -> None:
        self.guard = CallGuard(authenticate_token, audit, validate, insecure)

    def _finish(
        self,
        method: str,
        caller: Caller | None,
        context: grpc.ServicerContext,
        request: Any,
        response: Any,
        exc: BaseException | None,
    ) -> None:
        # The caller already carries the peer: asking gRPC again costs a lock in its core.
        peer = caller.peer if caller is not None else context.peer()
        code, message = self.guard.conclude(method, caller, peer, request, response, exc)
        if exc is not None:
            context.abort(code, message)

    # -- the wrapping ----------------------------------------------------------

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._server_stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._bidi(method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{method}: client-streaming RPCs are not wrapped")

    def _unary(self, method: str, inner: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        name = short_name(method)

        def unary(request: Any, context: grpc.ServicerContext) -> Any:
            caller: Caller | None = None
            response = None
            started = time.perf_counter()
            try:
                try:
                    caller = self.guard.authenticate(method, context)
                    self.guard.authorise(method, caller)
                    self.guard.validate(request)
                    _current.set(caller)
                    response = inner(request, context)
                except Exception as exc:
                    if _aborted(context):
                        raise
                    self._finish(method, caller, context, request, None, exc)
                self._finish(method, caller, context, request, response, None)
                return response
            finally:
                code = context.code() or grpc.StatusCode.OK  # type: ignore[attr-defined]
                API_LATENCY.labels(name, code.name).observe(time.perf_counter() - started)

        return unary

    def _server_stream(
        self, method: str, inner: Callable[[Any, Any], Iterator[Any]]
    ) -> Callable[[Any, Any], Iterator[Any]]:
        def stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            caller: Caller | None = None
            try:
                caller = self.guard.authenticate(method, context)
                self.guard.authorise(method, caller)
                self.guard.validate(request)
                _current.set(caller)
                yield from inner(request, context)
            except Exception as exc:
                if _aborted(context):
                    raise
                self._finish(method, caller, context, request, None, exc)
            self._finish(method, caller, context, request, None, None)

        return stream

    def _bidi(
        self, method: str, inner: Callable[[Iterator[Any], Any], Iterator[Any]]
    ) -> Callable[[Iterator[Any], Any], Iterator[Any]]:
        def bidi(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            caller: Caller | None = None
            try:
                caller = self.guard.authenticate(method, context)
                self.guard.authorise(method, caller)
                _current.set(caller)
                yield from inner(self._validated(requests), context)
            except Exception as exc:
                if _aborted(context):
                    raise
                self._finish(method, caller, context, None, None, exc)
            self._finish(method, caller, context, None, None, None)

        return bidi

    def _validated(self, requests: Iterator[Any]) -> Iterator[Any]:
        for n, request in enumerate(requests):
            if self.guard.keep_stream_message(n, request):
                yield request


def _aborted(context: grpc.ServicerContext) -> bool:
    """The servicer aborted the call itself: its status stands."""
    code = context.code()  # type: ignore[attr-defined]
    return code is not None and code != grpc.StatusCode.OK
