"""Running the gateway: its TLS listener and the aiohttp runner.

HTTPS by default: certificate files an operator gives, else a serving
certificate from the local CA in the data directory (scheduler/security,
the same CA `gpupool up` makes). Plaintext only with `insecure=True`
(`gpupool gateway --insecure`).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from scheduler.security.bootstrap import pki_dir, serving_hosts
from scheduler.security.pki import CertificateAuthority


@dataclass(frozen=True)
class GatewayTls:
    cert: Path
    key: Path


def local_gateway_tls(data_dir: Path, listen_host: str) -> GatewayTls:
    """A serving certificate for the gateway from the local CA (made if missing)."""
    directory = pki_dir(data_dir)
    ca = CertificateAuthority.load_or_create(directory)
    key, cert = ca.issue_server(serving_hosts(f"{listen_host}:0")).write(directory, "gateway")
    return GatewayTls(cert, key)


def server_ssl_context(tls: GatewayTls) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert, tls.key)
    return context


async def start(
    app: web.Application, host: str, port: int, tls: GatewayTls | None, insecure: bool = False
) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (cleanup() stops it) and the bound port."""
    if tls is None and not insecure:
        raise ValueError("the gateway serves HTTPS unless insecure is asked for")
    # A handler is cancelled when its client disconnects: that cancels the upstream request.
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    context = server_ssl_context(tls) if tls is not None else None
    site = web.TCPSite(runner, host, port, ssl_context=context, backlog=1024)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
