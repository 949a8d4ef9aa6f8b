"""meshd's own kubeconfig reader: token, token file (read again as it rotates), CA and client certificate
(inline or by path, relative to the file), in-cluster service account; unsupported forms refused by name."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from meshd.datastore import kubeconfig
from meshd.datastore.kubeconfig import load_credentials
from meshd.errors import ConfigError


def _pem_pair() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "meshd-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": cluster}], "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def test_token_and_inline_ca_over_https(tmp_path: Path) -> None:
    cert, _ = _pem_pair()
    cluster = {
        "server": "https://198.18.0.250:6443/",
        "certificate-authority-data": base64.b64encode(cert).decode(),
    }
    creds = load_credentials(_write(tmp_path / "kc", cluster, {"token": "abc"}))
    assert creds.server == "https://198.18.0.250:6443"
    assert creds.headers() == {"Authorization": "Bearer abc"}
    assert isinstance(creds.tls, ssl.SSLContext) and creds.tls.verify_mode == ssl.CERT_REQUIRED
    assert len(creds.tls.get_ca_certs()) == 1  # the cluster's CA only, not the system's as well


def test_plain_http_and_no_user_means_no_tls_and_no_auth(tmp_path: Path) -> None:
    creds = load_credentials(_write(tmp_path / "kc", {"server": "http://198.18.0.250:6443"}, {}))
    assert creds.tls is None and creds.headers() == {}


def test_client_certificate_by_relative_path(tmp_path: Path) -> None:
    cert, key = _pem_pair()
    (tmp_path / "ca.pem").write_bytes(cert)
    (tmp_path / "client.crt").write_bytes(cert)
    (tmp_path / "client.key").write_bytes(key)
    cluster = {"server": "https://198.18.0.250:6443", "certificate-authority": "ca.pem"}
    user = {"client-certificate": "client.crt", "client-key": "client.key"}
    creds = load_credentials(_write(tmp_path / "kc", cluster, user))
    assert creds.tls is not None and creds.headers() == {}


def test_a_token_file_is_read_again_once_it_may_have_rotated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "token").write_text("first\n")
    creds = load_credentials(_write(tmp_path / "kc", {"server": "http://h:1"}, {"tokenFile": "token"}))
    assert creds.headers() == {"Authorization": "Bearer first"}
    (tmp_path / "token").write_text("second\n")
    monkeypatch.setattr(kubeconfig, "TOKEN_REFRESH", -1.0)
    assert creds.headers() == {"Authorization": "Bearer second"}


@pytest.mark.parametrize(
    ("user", "reason"),
    [
        ({"exec": {"command": "aws"}}, "credential plugins"),
        ({"auth-provider": {"name": "gcp"}}, "credential plugins"),
        ({"tokenFile": "missing"}, "No such file"),
    ],
    ids=["exec", "auth-provider", "missing-token-file"],
)
def test_unusable_configurations_are_refused_with_the_reason(
    tmp_path: Path, user: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_credentials(_write(tmp_path / "kc", {"server": "https://h:1"}, user))


def test_a_context_naming_no_cluster_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text(json.dumps({"current-context": "nope", "contexts": []}))
    with pytest.raises(ConfigError, match="no context named 'nope'"):
        load_credentials(path)


def test_in_cluster_needs_the_service_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="KUBERNETES_SERVICE_HOST"):
        load_credentials(None)


def test_in_cluster_reads_the_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, _ = _pem_pair()
    (tmp_path / "ca.crt").write_bytes(cert)
    (tmp_path / "token").write_text("sa-token")
    monkeypatch.setattr(kubeconfig, "SA_DIR", tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    creds = load_credentials(None)
    assert creds.server == "https://[fd00::1]:443" and creds.headers() == {"Authorization": "Bearer sa-token"}
