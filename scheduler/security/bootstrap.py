"""Secure by default: what a scheduler started without credentials makes for
itself in its data directory, as kubeadm and k3s do.

    <data-dir>/pki/ca.key, ca.crt       the local CA (made once, kept)
    <data-dir>/pki/server.key, .crt     the serving certificate (re-issued each start)
    <data-dir>/pki/agents/<node>.*      simulated agents' certificates (gpupool up)
    <data-dir>/admin.yaml               the bootstrap admin's client config (0600)
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.errors import Unauthenticated
from scheduler.security.channels import ServerTls
from scheduler.security.client_config import CONFIG_NAME, ClientConfig, ConfigError
from scheduler.security.pki import CertificateAuthority, KeyPair
from scheduler.services.tokens import TokenService

log = logging.getLogger(__name__)

BOOTSTRAP_ADMIN = "bootstrap-admin"
_WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def pki_dir(data_dir: Path) -> Path:
    return data_dir / "pki"


def server_tls_from_files(cert: Path, key: Path, client_ca: Path) -> ServerTls:
    """Credentials an operator provides (cert-manager, a corporate CA)."""
    return ServerTls(KeyPair.read(key, cert), client_ca.read_bytes())


def serving_hosts(listen: str, extra: tuple[str, ...] = ()) -> list[str]:
    host = listen.rsplit(":", 1)[0].strip("[]")
    hosts = [] if host in _WILDCARDS else [host]
    return [*hosts, *extra, "localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()]


def local_server_tls(data_dir: Path, hosts: list[str]) -> ServerTls:
    """The local CA (made on first start) and a serving certificate for hosts."""
    directory = pki_dir(data_dir)
    ca = CertificateAuthority.load_or_create(directory)
    serving = ca.issue_server(hosts)
    serving.write(directory, "server")
    return ServerTls(serving, ca.cert_pem)


def ensure_admin_config(
    tokens: TokenService, data_dir: Path, api_address: str, agent_address: str
) -> Path:
    """<data-dir>/admin.yaml with a working admin token: kept if its token
    still authenticates, else a new bootstrap-admin token is created."""
    path = data_dir / CONFIG_NAME
    ca_cert = (pki_dir(data_dir) / "ca.crt").resolve()
    token = ""
    if path.is_file():
        try:
            token = ClientConfig.read(path).token
            if token:
                tokens.authenticate(token, peer="bootstrap")
        except (ConfigError, Unauthenticated):
            token = ""
    if not token:
        _, token = tokens.create(SYSTEM, BOOTSTRAP_ADMIN, Role.ADMIN, "")
        log.info("created the bootstrap admin token; its client config is %s", path)
    config = ClientConfig(
        scheduler=api_address, agent_endpoint=agent_address, ca_cert=ca_cert, token=token
    )
    config.write(path)
    return path


def issue_agent_credentials(data_dir: Path, node: str) -> tuple[Path, Path, Path]:
    """(ca.crt, <node>.crt, <node>.key) for a simulated agent of `gpupool up`."""
    directory = pki_dir(data_dir)
    ca = CertificateAuthority.load_or_create(directory)
    key_path, cert_path = ca.issue_agent(node).write(directory / "agents", node)
    return directory / "ca.crt", cert_path, key_path
