"""Where the API server is and who we are to it: a kubeconfig file, or the Pod's service account (in-cluster).

Read by meshd itself so that the agent does not load the Kubernetes client library (tens of MB of generated
models) for the four requests it makes. Supported, as the DaemonSet and kubeadm-style files use them:
`server`, `certificate-authority(-data)`, `insecure-skip-tls-verify`, `token`, `tokenFile`,
`client-certificate(-data)` + `client-key(-data)`. Credential plugins (`exec`, `auth-provider`) are refused
with a clear error. File paths are relative to the kubeconfig's directory. Token files are read again
every minute (bound service-account tokens rotate).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from meshd.errors import ConfigError

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TOKEN_REFRESH = 60.0


@dataclass(slots=True)
class Credentials:
    """How to reach the API server: its base URL, TLS settings, and a bearer token if any."""

    server: str
    tls: ssl.SSLContext | None  # None: plain http
    token: str | None = None
    token_file: Path | None = None
    _read_at: float = field(default=0.0, repr=False)

    def headers(self) -> dict[str, str]:
        if self.token_file is not None and time.monotonic() - self._read_at > TOKEN_REFRESH:
            self.token = self.token_file.read_text().strip()
            self._read_at = time.monotonic()
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def load_credentials(kubeconfig: Path | None) -> Credentials:
    """Raises ConfigError with the reason when the configuration is missing, unreadable or unsupported."""
    where = str(kubeconfig) if kubeconfig is not None else "in-cluster service account"
    try:
        return _in_cluster() if kubeconfig is None else _from_file(kubeconfig)
    except (OSError, ValueError, KeyError, TypeError, ssl.SSLError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load Kubernetes configuration ({where}): {exc}") from exc


def _in_cluster() -> Credentials:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set; pass --kubeconfig")
    host = f"[{host}]" if ":" in host else host
    tls = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
    creds = Credentials(f"https://{host}:{port}", tls, token_file=SA_DIR / "token")
    creds.headers()  # read the token now: a missing one is a configuration error, not a 401 later
    return creds


def _named(doc: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    for item in doc.get(f"{kind}s") or ():
        if isinstance(item, dict) and item.get("name") == name:
            found = item.get(kind) or {}
            if isinstance(found, dict):
                return found
    raise ValueError(f"no {kind} named {name!r}")


def _from_file(path: Path) -> Credentials:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError("not a kubeconfig (not a mapping)")
    context = _named(doc, "context", str(doc.get("current-context") or ""))
    cluster = _named(doc, "cluster", str(context.get("cluster")))
    user = _named(doc, "user", str(context.get("user"))) if context.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ValueError(
            "credential plugins (exec, auth-provider) are not supported: use a token or a client certificate"
        )
    base = path.parent
    server = str(cluster["server"]).rstrip("/")
    tls = _tls(cluster, user, base) if server.startswith("https://") else None
    token_file = base / str(user["tokenFile"]) if user.get("tokenFile") else None
    creds = Credentials(server, tls, token=user.get("token"), token_file=token_file)
    creds.headers()
    return creds


def _pem(obj: dict[str, Any], key: str, base: Path) -> bytes | None:
    if obj.get(f"{key}-data"):
        return base64.b64decode(str(obj[f"{key}-data"]))
    if obj.get(key):
        return (base / str(obj[key])).read_bytes()
    return None


def _tls(cluster: dict[str, Any], user: dict[str, Any], base: Path) -> ssl.SSLContext:
    ca = _pem(cluster, "certificate-authority", base)
    # the cluster's CA alone when it names one (not the system's too); the system's when it does not
    ctx = ssl.create_default_context(cadata=ca.decode() if ca is not None else None)
    if cluster.get("insecure-skip-tls-verify"):
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    cert, key = _pem(user, "client-certificate", base), _pem(user, "client-key", base)
    if cert is not None and key is not None:
        with tempfile.TemporaryDirectory(prefix="meshd-tls-") as tmp:  # 0700: the key is never world-readable
            pair = Path(tmp) / "client.pem"
            pair.touch(mode=0o600)
            pair.write_bytes(cert + b"\n" + key)
            ctx.load_cert_chain(str(pair))
    return ctx
