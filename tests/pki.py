"""Test credentials: one CA per test session, a serving certificate for
loopback, and factories for agent certificates and bearer tokens."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine

from scheduler.app import SchedulerApp, SchedulerSettings
from scheduler.domain.callers import SYSTEM, Role
from scheduler.domain.clock import SystemClock
from scheduler.security.channels import ClientCredentials
from scheduler.security.pki import CertificateAuthority, KeyPair
from scheduler.services.tokens import TokenService

LOOPBACK = ["127.0.0.1", "localhost", "::1"]


@dataclass
class SessionPki:
    directory: Path
    ca: CertificateAuthority

    @classmethod
    def create(cls, directory: Path) -> SessionPki:
        ca = CertificateAuthority.load_or_create(directory)
        ca.issue_server(LOOPBACK).write(directory, "server")
        return cls(directory, ca)

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    def server_files(self) -> dict[str, Path]:
        """SchedulerSettings fields for a scheduler serving with this CA."""
        return {
            "tls_cert": self.directory / "server.crt",
            "tls_key": self.directory / "server.key",
            "client_ca": self.ca_cert,
        }

    def agent_files(self, node: str) -> tuple[Path, Path]:
        """(cert, key) of node's agent, issued on first use."""
        cert, key = (
            self.directory / "agents" / f"{node}.crt",
            self.directory / "agents" / f"{node}.key",
        )
        if not cert.exists():
            self.ca.issue_agent(node).write(self.directory / "agents", node)
        return cert, key

    def agent(self, node: str) -> ClientCredentials:
        cert, key = self.agent_files(node)
        return ClientCredentials(ca_pem=self.ca.cert_pem, certificate=KeyPair.read(key, cert))

    def admin_certificate(self, name: str = "root") -> ClientCredentials:
        return ClientCredentials(ca_pem=self.ca.cert_pem, certificate=self.ca.issue_admin(name))

    def token(
        self, app: SchedulerApp, role: Role, tenant: str = "", name: str = ""
    ) -> ClientCredentials:
        """A fresh token of this role made straight through the app's token service."""
        _, secret = app.tokens.create(SYSTEM, name or f"test-{role.value}", role, tenant)
        return ClientCredentials(ca_pem=self.ca.cert_pem, token=secret)

    def token_in(self, database_url: str, role: Role, tenant: str = "") -> ClientCredentials:
        """A token written to a database that no app of this process serves."""
        engine = create_engine(database_url)
        try:
            _, secret = TokenService(engine, SystemClock()).create(
                SYSTEM, f"test-{role.value}", role, tenant
            )
        finally:
            engine.dispose()
        return ClientCredentials(ca_pem=self.ca.cert_pem, token=secret)

    def server_args(self) -> list[str]:
        """`gpupool serve` flags for this CA."""
        files = self.server_files()
        return ["--tls-cert", str(files["tls_cert"]), "--tls-key", str(files["tls_key"]),
                "--client-ca", str(files["client_ca"])]  # fmt: skip

    def agent_args(self, node: str) -> list[str]:
        """`gpupool agent run` flags for node's agent."""
        cert, key = self.agent_files(node)
        return ["--ca-cert", str(self.ca_cert), "--cert", str(cert), "--key", str(key)]

    def anonymous(self) -> ClientCredentials:
        """TLS that trusts the server but proves nothing about the caller."""
        return ClientCredentials(ca_pem=self.ca.cert_pem)


_session: SessionPki | None = None


def session_pki() -> SessionPki:
    """The CA of this test process, made on first use."""
    global _session
    if _session is None:
        _session = SessionPki.create(Path(tempfile.mkdtemp(prefix="gpupool-test-pki-")))
    return _session


def scheduler_settings(database_url: str, **overrides: Any) -> SchedulerSettings:
    """Settings of a test replica: TLS from the session CA, both ports picked by the OS."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "listen": "127.0.0.1:0",
        "agent_listen": "127.0.0.1:0",
        "run_loops": False,
        **session_pki().server_files(),
    }
    values.update(overrides)
    if not values["run_loops"]:
        # Nothing renews the leader lease without the loops: let it outlive the
        # test, or leader-only work stops after a few seconds on a busy machine.
        values.setdefault("leader_lease_ttl_s", 600.0)
    return SchedulerSettings(**values)
