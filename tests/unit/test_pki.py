"""The local CA: identities in URI SANs, and client configs that find their files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509

from scheduler.security.client_config import ClientConfig, ConfigError
from scheduler.security.pki import CertIdentity, CertificateAuthority, identity_uri, parse_identity


def _uris(cert_pem: bytes) -> list[str]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def test_an_agent_certificate_names_its_node(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path)
    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    pair = ca.issue_agent("h100-sxm-0")
    assert _uris(pair.cert_pem) == ["spiffe://gpupool/node/h100-sxm-0"]
    assert parse_identity(_uris(pair.cert_pem)[0]) == CertIdentity("node", "h100-sxm-0")
    again = CertificateAuthority.load_or_create(tmp_path)
    assert again.cert_pem == ca.cert_pem, "the CA is kept, not remade"


def test_identities_are_parsed_strictly() -> None:
    assert parse_identity(identity_uri("admin", "alice")) == CertIdentity("admin", "alice")
    for bad in (
        "spiffe://other/node/n1",
        "spiffe://gpupool/root/n1",
        "spiffe://gpupool/node/n1/extra",
        "spiffe://gpupool/node/UPPER",
        "spiffe://gpupool/node/",
        "gpupool://node/n1",
    ):
        assert parse_identity(bad) is None, bad


def test_names_that_are_not_node_names_get_no_certificate(tmp_path: Path) -> None:
    ca = CertificateAuthority.create()
    for bad in ("", "a/b", "-x", "x" * 300, "node\x00"):
        with pytest.raises(ValueError):
            ca.issue_agent(bad)


def test_a_client_config_resolves_relative_paths_and_is_private(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_bytes(CertificateAuthority.create().cert_pem)
    path = tmp_path / "admin.yaml"
    ClientConfig(scheduler="h:1", ca_cert=Path("ca.crt"), token="gpp_x").write(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    config = ClientConfig.read(path)
    assert config.ca_cert == tmp_path / "ca.crt"
    credentials = config.credentials()
    assert credentials.token == "gpp_x" and credentials.ca_pem is not None
    (tmp_path / "bad.yaml").write_text("scheduler: h:1\nsurprise: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        ClientConfig.read(tmp_path / "bad.yaml")
