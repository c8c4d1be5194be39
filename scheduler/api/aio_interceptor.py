"""The agent port's interceptor, for the grpc.aio server (api/aio_server.py).

It does what ApiInterceptor does, through the same CallGuard (authenticate,
authorise, validate, map errors, audit), with two differences the aio server
forces: the context's abort is a coroutine, awaited here on the event loop;
and a sync handler (the Scheduler and Admin servicers, RegisterNode) runs on
a thread pool with the caller in its context variables, so a database call
never blocks the loop that carries every agent's stream.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor
from typing import Any

import grpc

from scheduler.api.access import PUBLIC_PREFIXES
from scheduler.api.interceptor import CallGuard, set_current_caller
from scheduler.domain.callers import Caller

_END = object()  # a sync stream's end, returned by next() on the pool


class ThreadContext:
    """What a sync servicer reads of its call (grpc.ServicerContext's names),
    over an aio context, from a pool thread: its deadline, and whether the
    call still runs (a watch stream's loop condition)."""

    def __init__(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self._context = context

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def is_active(self) -> bool:
        return not self._context.done()

    def peer(self) -> str:
        return self._context.peer()

    def auth_context(self) -> Mapping[str, Iterable[bytes]]:
        return self._context.auth_context()

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()


def _peer(caller: Caller | None, context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller carries its peer; only a caller not told apart needs gRPC's."""
    return caller.peer if caller is not None else context.peer()


class AioApiInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, guard: CallGuard, pool: Executor) -> None:
        self._guard = guard
        self._pool = pool

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(PUBLIC_PREFIXES):
            return handler
        wrap = {"request_deserializer": handler.request_deserializer,
                "response_serializer": handler.response_serializer}  # fmt: skip
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary), **wrap
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._server_stream(method, handler.unary_stream), **wrap
            )
        if handler.stream_stream is not None:
            if not inspect.isasyncgenfunction(handler.stream_stream):
                raise TypeError(f"{method}: a bidi stream on the aio server must be async")
            return grpc.stream_stream_rpc_method_handler(
                self._bidi(method, handler.stream_stream), **wrap
            )
        raise TypeError(f"{method}: client-streaming RPCs are not wrapped")

    # -- running the inner handler ---------------------------------------------

    async def _in_pool(self, ctx: contextvars.Context, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, ctx.run, fn, *args)

    async def _fail(
        self,
        method: str,
        caller: Caller | None,
        context: grpc.aio.ServicerContext[Any, Any],
        request: Any,
        exc: Exception,
    ) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            raise exc  # the servicer aborted the call itself: its status stands
        code, message = self._guard.conclude(
            method, caller, _peer(caller, context), request, None, exc
        )
        await context.abort(code, message)

    def _admit(self, method: str, caller: Caller, request: Any | None) -> None:
        self._guard.authorise(method, caller)
        if request is not None:
            self._guard.validate(request)
        set_current_caller(caller)  # this call's task; copied into pool threads

    def _unary(self, method: str, inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
        is_async = inspect.iscoroutinefunction(inner)

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            caller: Caller | None = None
            try:
                caller = self._guard.authenticate(method, context)
                self._admit(method, caller, request)
                if is_async:
                    response = await inner(request, context)
                else:
                    ctx = contextvars.copy_context()
                    response = await self._in_pool(ctx, inner, request, ThreadContext(context))
            except Exception as exc:
                await self._fail(method, caller, context, request, exc)
                raise  # not reached: abort raises
            self._guard.conclude(method, caller, _peer(caller, context), request, response, None)
            return response

        return unary

    def _server_stream(
        self, method: str, inner: Callable[..., Any]
    ) -> Callable[..., AsyncIterator[Any]]:
        is_async = inspect.isasyncgenfunction(inner)

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            caller: Caller | None = None
            try:
                caller = self._guard.authenticate(method, context)
                self._admit(method, caller, request)
                if is_async:
                    async for response in inner(request, context):
                        yield response
                else:
                    # One pool thread per next(): a watch holds one only while it waits.
                    ctx = contextvars.copy_context()
                    responses: Iterator[Any] = ctx.run(inner, request, ThreadContext(context))
                    while (response := await self._in_pool(ctx, next, responses, _END)) is not _END:
                        yield response
            except Exception as exc:
                await self._fail(method, caller, context, request, exc)
            self._guard.conclude(method, caller, _peer(caller, context), request, None, None)

        return stream

    def _bidi(self, method: str, inner: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
        async def bidi(
            requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            caller: Caller | None = None
            try:
                caller = self._guard.authenticate(method, context)
                self._admit(method, caller, None)
                async for response in inner(self._validated(requests), context):
                    yield response
            except Exception as exc:
                await self._fail(method, caller, context, None, exc)
            self._guard.conclude(method, caller, _peer(caller, context), None, None, None)

        return bidi

    async def _validated(self, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        n = 0
        async for request in requests:
            if self._guard.keep_stream_message(n, request):
                yield request
            n += 1
