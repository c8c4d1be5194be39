"""A local certificate authority, as kubeadm and k3s make one: the scheduler's
serving certificate, one client certificate per agent naming its node, and
admin client certificates. ECDSA P-256 keys through the `cryptography` library.

Identities live in a URI SAN, SPIFFE-style, so cert-manager (or any CA) can
issue the same certificates on Kubernetes:
    spiffe://gpupool/node/<node>     an agent of that node
    spiffe://gpupool/admin/<name>    an administrator
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "gpupool"
CA_VALIDITY = datetime.timedelta(days=3650)
LEAF_VALIDITY = datetime.timedelta(days=365)
# Node names: what nodes.name may hold (DNS-1123 subdomain-like).
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$")
_IDENTITY = re.compile(rf"^spiffe://{TRUST_DOMAIN}/(node|admin)/([^/]+)$")


@dataclass(frozen=True)
class KeyPair:
    """A PEM private key and its PEM certificate."""

    key_pem: bytes
    cert_pem: bytes

    def write(self, directory: Path, stem: str) -> tuple[Path, Path]:
        """Write <stem>.key (0600) and <stem>.crt; returns their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        key_path, cert_path = directory / f"{stem}.key", directory / f"{stem}.crt"
        _write_private(key_path, self.key_pem)
        cert_path.write_bytes(self.cert_pem)
        return key_path, cert_path

    @classmethod
    def read(cls, key_path: Path, cert_path: Path) -> KeyPair:
        return cls(key_path.read_bytes(), cert_path.read_bytes())


@dataclass(frozen=True)
class CertIdentity:
    kind: str  # "node" | "admin"
    name: str


def identity_uri(kind: str, name: str) -> str:
    return f"spiffe://{TRUST_DOMAIN}/{kind}/{name}"


def parse_identity(uri: str) -> CertIdentity | None:
    """The identity a certificate's URI SAN names, or None if it names none."""
    match = _IDENTITY.match(uri)
    if match is None or not _NAME.match(match.group(2)):
        return None
    return CertIdentity(match.group(1), match.group(2))


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise ValueError(
            f"{what} {name[:64]!r} must be 1-253 lower-case letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class CertificateAuthority:
    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def create(cls, common_name: str = "gpupool local CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    @classmethod
    def load_or_create(cls, directory: Path) -> CertificateAuthority:
        """The CA kept in directory (ca.key, ca.crt), made on first use."""
        key_path, cert_path = directory / "ca.key", directory / "ca.crt"
        if key_path.exists() and cert_path.exists():
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path} is not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        ca = cls.create()
        KeyPair(_key_pem(ca._key), ca.cert_pem).write(directory, "ca")
        return ca

    def _issue(
        self,
        common_name: str,
        sans: list[x509.GeneralName],
        usages: list[x509.ObjectIdentifier],
        validity: datetime.timedelta,
    ) -> KeyPair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), False
            )
            .sign(self._key, hashes.SHA256())
        )
        return KeyPair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM))

    def issue_server(
        self, hosts: list[str], validity: datetime.timedelta = LEAF_VALIDITY
    ) -> KeyPair:
        """A serving certificate for these host names and IP addresses. It is
        also a client certificate, so replicas can dial each other with it."""
        sans: list[x509.GeneralName] = []
        for host in dict.fromkeys(hosts):
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        usages = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
        return self._issue("gpupool scheduler", sans, usages, validity)

    def issue_agent(self, node: str, validity: datetime.timedelta = LEAF_VALIDITY) -> KeyPair:
        """A client certificate that lets its holder speak for `node` only."""
        check_name(node, "node name")
        uri = x509.UniformResourceIdentifier(identity_uri("node", node))
        return self._issue(node, [uri], [ExtendedKeyUsageOID.CLIENT_AUTH], validity)

    def issue_admin(self, name: str, validity: datetime.timedelta = LEAF_VALIDITY) -> KeyPair:
        check_name(name, "admin name")
        uri = x509.UniformResourceIdentifier(identity_uri("admin", name))
        return self._issue(name, [uri], [ExtendedKeyUsageOID.CLIENT_AUTH], validity)
