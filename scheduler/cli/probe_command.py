"""`gpupool probe`: the gRPC health check over TLS, for Kubernetes probes
(kubelet's built-in gRPC probe speaks plaintext only)."""

from __future__ import annotations

from pathlib import Path

import click
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.security.channels import ClientCredentials, open_channel


@click.command()
@click.option("--address", default="127.0.0.1:50051", show_default=True, metavar="HOST:PORT")
@click.option(
    "--ca-cert",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    default=None,
    help="CA of the scheduler's serving certificate.",
)
@click.option("--insecure", is_flag=True, help="Plaintext (a scheduler run --insecure).")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds.")
def probe(address: str, ca_cert: Path | None, insecure: bool, timeout: float) -> None:
    """Exit 0 when the scheduler at ADDRESS answers SERVING, 1 otherwise."""
    if not insecure and ca_cert is None:
        raise click.UsageError("give --ca-cert (or --insecure for a plaintext scheduler)")
    credentials = (
        ClientCredentials(insecure=True)
        if insecure
        else ClientCredentials(ca_pem=ca_cert.read_bytes() if ca_cert else None)
    )
    with open_channel(address, credentials) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else "no answer"
            click.echo(f"{address}: {code}", err=True)
            raise SystemExit(1) from None
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    click.echo(f"{address}: {status}")
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        raise SystemExit(1)
