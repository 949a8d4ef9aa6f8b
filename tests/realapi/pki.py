"""The API server's keys and certificates (cryptography): a CA, the serving certificate, a cluster-admin
client certificate (O=system:masters) and the service-account signing key. ECDSA P-256 throughout."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DNS_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files under DIR/pki."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.crt"

    def crt(self, name: str) -> Path:
        return self.root / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.write_bytes(data)
    path.chmod(mode)


def _sign(
    builder: x509.CertificateBuilder,
    subject_key: ec.EllipticCurvePrivateKey,
    ca_key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        builder.public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
    )
    return builder.sign(ca_key, hashes.SHA256())


def _leaf(
    pki: Pki,
    name: str,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    *,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    sans: list[x509.GeneralName] | None = None,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca[0].subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    _write(pki.crt(name), _sign(builder, key, ca[1]).public_bytes(serialization.Encoding.PEM))
    _write(pki.key(name), _key_pem(key), 0o600)


def create(root: Path, address: str, service_ip: str) -> Pki:
    """Write a fresh CA, `apiserver` (serving `address`), `admin` (system:masters) and `sa` (signing key)."""
    pki = Pki(root)
    root.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_builder = (
        x509.CertificateBuilder()
        .subject_name(_name("meshd-test-ca"))
        .issuer_name(_name("meshd-test-ca"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    )
    ca_cert = _sign(ca_builder, ca_key, ca_key)
    _write(pki.ca, ca_cert.public_bytes(serialization.Encoding.PEM))
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in DNS_NAMES]
    sans += [
        x509.IPAddress(ipaddress.ip_address(a)) for a in dict.fromkeys([address, service_ip, "127.0.0.1"])
    ]
    ca = (ca_cert, ca_key)
    _leaf(pki, "apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, ca=ca, sans=sans)
    _leaf(pki, "admin", _name("meshd-test-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH, ca=ca)
    sa_key = ec.generate_private_key(ec.SECP256R1())
    _write(pki.key("sa"), _key_pem(sa_key), 0o600)
    pub = sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pki.sa_pub, pub)
    return pki
