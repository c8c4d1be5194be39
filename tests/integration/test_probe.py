"""`gpupool probe`, the Kubernetes probes' gRPC health check over TLS."""

from __future__ import annotations

from click.testing import CliRunner

from scheduler.app import SchedulerApp
from scheduler.cli.main import cli
from tests.pki import session_pki


def test_probe_says_serving_over_tls_and_fails_without_a_scheduler(app: SchedulerApp) -> None:
    ca = str(session_pki().ca_cert)
    result = CliRunner().invoke(cli, ["probe", "--address", app.address, "--ca-cert", ca])
    assert result.exit_code == 0 and "SERVING" in result.output
    result = CliRunner().invoke(
        cli, ["probe", "--address", "127.0.0.1:1", "--ca-cert", ca, "--timeout", "1"]
    )
    assert result.exit_code == 1
