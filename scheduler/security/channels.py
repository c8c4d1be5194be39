"""The one place gRPC transports are made: client channels for the CLI,
agents, benchmarks and tests, and the scheduler's listening ports.

A scheduler listens on two ports (the agent port on a grpc.aio server of
its own, api/aio_server.py):
- the API port: TLS; callers present a bearer token;
- the agent port: mutual TLS; agents (and admins) present a client
  certificate from the cluster CA, whose URI SAN names who they are.
(gRPC Python can only require a client certificate or not ask for one, so
token callers and certificate callers need a port each.)

Plaintext exists only behind an explicit --insecure, with one exception:
a metrics listener (serve_metrics) may be plain HTTP, because it serves
nothing but Prometheus' read-only text format (no call, no credential, no
request body is accepted) -- give it a certificate to make it HTTPS.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, start_http_server

from scheduler.security.pki import KeyPair

log = logging.getLogger(__name__)

# Clients accept answers larger than gRPC's 4 MiB default (a page of 1,000
# allocations, the nodes of a big fleet); servers keep the default for requests.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MESSAGE_OPTIONS = (("grpc.max_receive_message_length", MAX_RESPONSE_BYTES),)


@dataclass(frozen=True)
class ClientCredentials:
    """What a client presents: the CA it trusts, and a token or a certificate."""

    ca_pem: bytes | None = None
    token: str = ""
    certificate: KeyPair | None = None
    insecure: bool = False
    # Check the server's certificate against this name instead of the target's
    # host (a replica dialled by IP whose certificate names its DNS name).
    server_name: str = ""

    def describe(self) -> str:
        if self.insecure:
            return "plaintext (--insecure)"
        return "TLS with a client certificate" if self.certificate else "TLS with a token"


@dataclass(frozen=True)
class ServerTls:
    """The scheduler's serving key pair and the CA its client certificates come from."""

    serving: KeyPair
    client_ca_pem: bytes


def open_channel(
    target: str, credentials: ClientCredentials, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    all_options = [*MESSAGE_OPTIONS, *options]
    if credentials.insecure:
        return grpc.insecure_channel(target, options=all_options)
    return grpc.secure_channel(target, _channel_credentials(credentials, all_options), all_options)


def open_aio_channel(
    target: str, credentials: ClientCredentials, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    all_options = [*MESSAGE_OPTIONS, *options]
    if credentials.insecure:
        return grpc.aio.insecure_channel(target, options=all_options)
    creds = _channel_credentials(credentials, all_options)
    return grpc.aio.secure_channel(target, creds, all_options)


def _channel_credentials(
    credentials: ClientCredentials, options: list[tuple[str, Any]]
) -> grpc.ChannelCredentials:
    if credentials.ca_pem is None:
        raise ValueError("a TLS channel needs the CA certificate that signed the scheduler's")
    pair = credentials.certificate
    transport = grpc.ssl_channel_credentials(
        root_certificates=credentials.ca_pem,
        private_key=pair.key_pem if pair else None,
        certificate_chain=pair.cert_pem if pair else None,
    )
    if credentials.server_name:
        options.append(("grpc.ssl_target_name_override", credentials.server_name))
    if not credentials.token:
        return transport
    # Sent as `authorization: Bearer <token>` on every call, by gRPC core.
    call = grpc.access_token_call_credentials(credentials.token)
    return grpc.composite_channel_credentials(transport, call)


def add_ports(
    server: grpc.Server, api_address: str, agent_address: str, tls: ServerTls | None
) -> tuple[int, int]:
    """Bind the API and agent ports (plaintext when tls is None); returns them.
    An empty agent_address serves agents on no port of their own."""
    if tls is None:
        api_port = server.add_insecure_port(api_address)
    else:
        api = grpc.ssl_server_credentials([(tls.serving.key_pem, tls.serving.cert_pem)])
        api_port = server.add_secure_port(api_address, api)
    agent_port = add_agent_port(server, agent_address, tls) if agent_address else 0
    if api_port == 0:
        raise OSError(f"cannot listen on {api_address}")
    return api_port, agent_port


def add_agent_port(
    server: grpc.Server | grpc.aio.Server, address: str, tls: ServerTls | None
) -> int:
    """Bind the agent port (mutual TLS; plaintext when tls is None) on a sync
    or a grpc.aio server; returns it."""
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        pairs = [(tls.serving.key_pem, tls.serving.cert_pem)]
        mutual = grpc.ssl_server_credentials(
            pairs, root_certificates=tls.client_ca_pem, require_client_auth=True
        )
        port = server.add_secure_port(address, mutual)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    return port


def channel_ready(target: str, credentials: ClientCredentials, timeout: float = 10.0) -> bool:
    channel = open_channel(target, credentials)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


@dataclass(frozen=True)
class MetricsListener:
    """A running metrics endpoint; `address` has the bound port."""

    address: str
    tls: bool
    _server: Any

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def serve_metrics(
    address: str,
    registry: CollectorRegistry,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> MetricsListener:
    """Serve `registry` on HOST:PORT (port 0: any free one) in a thread.

    Plain HTTP unless given a serving certificate and key (then HTTPS): the
    endpoint answers every GET with the metrics and nothing else. Bind it to
    a pod or loopback address, not to the world: tenant names are labels.
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not HOST:PORT")
    if (cert_file is None) != (key_file is None):
        raise ValueError("a metrics certificate and its key go together")
    host = host.strip("[]") or "0.0.0.0"
    server, _thread = start_http_server(
        int(port), host, registry, certfile=cert_file, keyfile=key_file
    )
    bound = server.server_port
    log.info("metrics on %s://%s:%d/metrics", "https" if cert_file else "http", host, bound)
    return MetricsListener(f"{host}:{bound}", cert_file is not None, server)
