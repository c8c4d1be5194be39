"""`gpupool token`, `gpupool certs` and `gpupool audit`: who may call, and who did what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from rich.table import Table

from gpupool.v1 import admin_pb2
from scheduler.cli.admin_commands import CliContext, pass_state
from scheduler.cli.queue_commands import parse_duration
from scheduler.security.client_config import ClientConfig, find_config
from scheduler.security.pki import CertificateAuthority

ROLES = {
    "service": admin_pb2.TOKEN_ROLE_SERVICE,
    "viewer": admin_pb2.TOKEN_ROLE_VIEWER,
    "admin": admin_pb2.TOKEN_ROLE_ADMIN,
}
_ROLE_NAMES = {value: name for name, value in ROLES.items()}
DEFAULT_PKI = Path(".gpupool") / "pki"


def _when(message: admin_pb2.Token | admin_pb2.AuditEvent, name: str) -> str:
    if not message.HasField(name):
        return "-"
    value: datetime = getattr(message, name).ToDatetime(tzinfo=UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def tokens_table(tokens: list[admin_pb2.Token]) -> Table:
    table = Table(title="API tokens")
    for column in ("ID", "NAME", "ROLE", "TENANT", "CREATED", "BY", "EXPIRES", "REVOKED"):
        table.add_column(column)
    for t in tokens:
        table.add_row(
            t.id,
            t.name,
            _ROLE_NAMES.get(t.role, "?"),
            t.tenant or "-",
            _when(t, "created_at"),
            t.created_by,
            _when(t, "expires_at"),
            _when(t, "revoked_at"),
        )
    return table


@click.group()
def token() -> None:
    """Bearer tokens for services, viewers and admins."""


@token.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(list(ROLES)), required=True)
@click.option("--tenant", default="", help="Required for --role service.")
@click.option(
    "--ttl", default="", metavar="DURATION", help="e.g. 3600s, 90m, 720h (default: never)."
)
@click.option(
    "--write",
    "write_to",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write a client config holding the token (0600) to this file.",
)
@pass_state
def token_create(
    state: CliContext, name: str, role: str, tenant: str, ttl: str, write_to: Path | None
) -> None:
    """Create a token; its secret is printed once and never stored."""
    ttl_s = parse_duration(ttl) if ttl else 0
    result = state.client().create_token(name, ROLES[role], tenant, ttl_s)
    if write_to is not None:
        target, _ = state.connection()
        ClientConfig(scheduler=target, ca_cert=_ca_path(state), token=result.secret).write(write_to)
    if state.json:
        state.say(result, "")
        return
    click.echo(f"token {result.token.id} ({role}{' of ' + tenant if tenant else ''}) created")
    click.echo(f"secret (shown once): {result.secret}")
    if write_to is not None:
        click.echo(f"client config written to {write_to}")


def _ca_path(state: CliContext) -> Path | None:
    """The CA this CLI trusts, for a config handed to someone else."""
    if state.ca_cert is not None:
        return state.ca_cert.resolve()
    config = find_config(state.config)
    return config.ca_cert if config else None


@token.command("list")
@click.option("--tenant", default="")
@click.option("--all", "include_revoked", is_flag=True, help="Include revoked tokens.")
@pass_state
def token_list(state: CliContext, tenant: str, include_revoked: bool) -> None:
    """Tokens (never their secrets)."""
    found = state.client().list_tokens(tenant, include_revoked)
    state.show(found, lambda: tokens_table(found))


@token.command("revoke")
@click.argument("token_id", metavar="ID")
@pass_state
def token_revoke(state: CliContext, token_id: str) -> None:
    """Revoke a token: refused at once here, within seconds on other replicas."""
    result = state.client().revoke_token(token_id)
    state.say(result, f"token {result.id} ({result.name}) revoked")


@click.group()
def certs() -> None:
    """Certificates from the local CA (run where the scheduler's data directory is)."""


_pki_option = click.option(
    "--pki-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_PKI,
    show_default=True,
    help="The local CA's directory (<data-dir>/pki of gpupool serve/up).",
)
_days_option = click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)


def _load_ca(pki_dir: Path) -> CertificateAuthority:
    if not (pki_dir / "ca.key").is_file():
        raise click.UsageError(
            f"no CA in {pki_dir}: start `gpupool serve` once (it makes one), or use --pki-dir"
        )
    return CertificateAuthority.load_or_create(pki_dir)


@certs.command("issue-agent")
@click.argument("node")
@_pki_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory for NODE.crt, NODE.key and ca.crt (copy it to the host).",
)
@_days_option
def issue_agent(node: str, pki_dir: Path, out: Path, days: int) -> None:
    """A client certificate that lets an agent speak for NODE, and only for NODE."""
    ca = _load_ca(pki_dir)
    try:
        pair = ca.issue_agent(node, timedelta(days=days))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NODE") from None
    key, cert = pair.write(out, node)
    (out / "ca.crt").write_bytes(ca.cert_pem)
    click.echo(f"wrote {cert}, {key} and {out / 'ca.crt'}; on the host run:")
    click.echo(
        f"  gpupool agent run --scheduler SCHEDULER:50052 --node-name {node} "
        f"--ca-cert ca.crt --cert {node}.crt --key {node}.key"
    )


@certs.command("issue-admin")
@click.argument("name")
@_pki_option
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True)
@click.option(
    "--scheduler",
    "agent_endpoint",
    default="127.0.0.1:50052",
    show_default=True,
    help="The agent (mutual-TLS) port the certificate is presented on.",
)
@_days_option
def issue_admin(name: str, pki_dir: Path, out: Path, agent_endpoint: str, days: int) -> None:
    """An admin client certificate, and a client config that uses it."""
    ca = _load_ca(pki_dir)
    try:
        pair = ca.issue_admin(name, timedelta(days=days))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="NAME") from None
    key, cert = pair.write(out, name)
    ca_path = out / "ca.crt"
    ca_path.write_bytes(ca.cert_pem)
    config = out / f"{name}.yaml"
    ClientConfig(
        scheduler=agent_endpoint, ca_cert=ca_path.resolve(), cert=cert.resolve(), key=key.resolve()
    ).write(config)
    click.echo(f"wrote {cert}, {key}; use it with: gpupool --config {config} nodes")


def audit_table(events: list[admin_pb2.AuditEvent]) -> Table:
    table = Table(title="Audit events, newest first")
    for column in ("AT", "ACTOR", "METHOD", "TARGET", "CODE", "PEER", "DETAIL"):
        table.add_column(column)
    for e in events:
        table.add_row(
            _when(e, "at"), e.actor, e.method, e.target or "-", e.code, e.peer, e.detail or ""
        )
    return table


@click.command()
@click.option("--since", default="", metavar="DURATION", help="e.g. 10m, 24h (default: all).")
@click.option("--actor", default="", help="Substring of the actor, e.g. alice or 'node h100'.")
@click.option("--tenant", default="")
@click.option("--node", default="")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@pass_state
def audit(state: CliContext, since: str, actor: str, tenant: str, node: str, limit: int) -> None:
    """Who changed what, on what, from where, and whether it was allowed."""
    start = datetime.now(UTC) - timedelta(seconds=parse_duration(since)) if since else None
    found = state.client().list_audit_events(start, actor, tenant, node, limit)
    state.show(found, lambda: audit_table(found))


def register_trust_commands(group: click.Group) -> None:
    group.add_command(token)
    group.add_command(certs)
    group.add_command(audit)
