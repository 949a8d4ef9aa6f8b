"""`up`: etcd and kube-apiserver in a network namespace, TLS on ADDRESS:6443, until `down` stops them.

The API server: RBAC + Node authorization, the default admission plugins plus NodeRestriction and
ValidatingAdmissionPolicy, a service-account issuer and signing key (TokenRequest, Pod-bound tokens carry
the Pod's node name), audit off. etcd listens on 127.0.0.1 inside the same namespace, data under DIR/etcd.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import yaml

from tests.realapi import build, pki
from tests.realapi.procs import State, probe

PORT = 6443
ETCD_URL = "http://127.0.0.1:2379"
DEFAULT_ADDRESS = "198.18.0.250"
SERVICE_RANGE, SERVICE_IP = "198.18.240.0/24", "198.18.240.1"
ISSUER = "https://kubernetes.default.svc.cluster.local"


class UpError(RuntimeError):
    pass


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise UpError(f"ip {' '.join(args)}: {res.stderr.strip()}")


def prepare(directory: Path, netns: str | None, address: str | None) -> State:
    """Record the state file first, then the namespace and address (each recorded once it exists)."""
    created_dir = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    directory = directory.resolve()
    name = netns or f"mapi{secrets.token_hex(3)}"
    state = State(str(directory), name, address or DEFAULT_ADDRESS, created_dir=created_dir)
    state.own(state.path)
    if netns is None:
        _ip("netns", "add", name)
        state.created_netns = True
        state.save()
        _ip("-n", name, "link", "set", "lo", "up")
    elif not Path(f"/run/netns/{netns}").exists():
        raise UpError(f"no network namespace {netns}")
    shown = subprocess.run(
        ["ip", "-n", name, "-o", "addr", "show"], capture_output=True, text=True, check=False
    )
    if f" {state.address}/" not in shown.stdout:
        _ip("-n", name, "addr", "add", f"{state.address}/32", "dev", "lo")
        state.added_address = f"{state.address}/32 dev lo"
        state.save()
    return state


def etcd_argv(state: State, bins: Path) -> list[str]:
    data = state.own(Path(state.dir) / "etcd")
    return [
        str(bins / "etcd"), "--name", "meshd-test", "--data-dir", str(data),
        "--listen-client-urls", ETCD_URL, "--advertise-client-urls", ETCD_URL,
        "--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
        "--initial-cluster", "meshd-test=http://127.0.0.1:2380", "--log-level", "warn", "--unsafe-no-fsync",
    ]  # fmt: skip


def apiserver_argv(state: State, bins: Path, keys: pki.Pki) -> list[str]:
    return [
        str(bins / "kube-apiserver"),
        f"--etcd-servers={ETCD_URL}",
        f"--bind-address={state.address}", f"--advertise-address={state.address}", f"--secure-port={PORT}",
        f"--tls-cert-file={keys.crt('apiserver')}", f"--tls-private-key-file={keys.key('apiserver')}",
        f"--client-ca-file={keys.ca}", f"--cert-dir={keys.root}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction,ValidatingAdmissionPolicy",
        "--allow-privileged=true",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={keys.sa_pub}", f"--service-account-signing-key-file={keys.key('sa')}",
        f"--service-cluster-ip-range={SERVICE_RANGE}",
        "--profiling=false", "--v=1",
    ]  # fmt: skip


def wait_ready(state: State, name: str, url: str, keys: pki.Pki | None, timeout: float) -> None:
    deadline, last = time.monotonic() + timeout, (0, "")
    tls = {"ca": str(keys.ca), "crt": str(keys.crt("admin")), "key": str(keys.key("admin"))} if keys else {}
    while time.monotonic() < deadline:
        if not state.running(name):
            log = Path(state.dir) / "logs" / f"{name}.log"
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
            raise UpError(f"{name} exited: {tail[0][:300]}")
        last = probe(state.netns, url, **tls)
        if last[0] == 200:
            return
        time.sleep(0.3)
    raise UpError(f"{name} not ready after {timeout:.0f}s: {last[0]} {last[1][:200]}")


def start_apiserver(state: State, *, timeout: float = 120) -> None:
    """(Re)start kube-apiserver with the command line `up` used and wait for /readyz."""
    state.spawn("kube-apiserver", state.argv["kube-apiserver"])
    keys = pki.Pki(Path(state.dir) / "pki")
    wait_ready(state, "kube-apiserver", f"https://{state.address}:{PORT}/readyz", keys, timeout)


def write_kubeconfig(path: Path, server: str, ca: Path, crt: Path, key: Path) -> None:
    def b64(p: Path) -> str:
        return base64.b64encode(p.read_bytes()).decode()

    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "admin",
        "clusters": [{"name": "meshd-test", "cluster": {"server": server, "certificate-authority-data": b64(ca)}}],
        "users": [{"name": "admin", "user": {"client-certificate-data": b64(crt), "client-key-data": b64(key)}}],
        "contexts": [{"name": "admin", "context": {"cluster": "meshd-test", "user": "admin"}}],
    }  # fmt: skip
    path.write_text(yaml.safe_dump(doc))
    path.chmod(0o600)


def up(directory: Path, netns: str | None, address: str | None) -> State:
    """Everything `up` does; on any failure or interrupt, `down` undoes what was done so far."""
    bins = build.build()
    if (directory / "apiserver-state.json").exists():
        raise UpError(f"{directory} already holds an API server (or one not cleaned up): `down` it first")
    state: State | None = None
    try:
        state = prepare(directory, netns, address)
        _start(state, bins)
    except BaseException:
        if state is not None or (directory / "apiserver-state.json").exists():
            down(directory)
        raise
    return state


def _start(state: State, bins: Path) -> None:
    root = Path(state.dir)
    state.own(root / "logs").mkdir(exist_ok=True)
    keys = pki.create(state.own(root / "pki"), state.address, SERVICE_IP)
    state.spawn("etcd", etcd_argv(state, bins))
    wait_ready(state, "etcd", f"{ETCD_URL}/health", None, 60)
    state.argv["kube-apiserver"] = apiserver_argv(state, bins, keys)
    start_apiserver(state)
    kubeconfig = state.own(root / "admin.kubeconfig")
    server = f"https://{state.address}:{PORT}"
    write_kubeconfig(kubeconfig, server, keys.ca, keys.crt("admin"), keys.key("admin"))


def down(directory: Path) -> None:
    """Stop what `up DIR` started (API server first), then remove what it created, newest first."""
    state = State.load(directory.resolve())
    for name in ("kube-apiserver", "etcd"):
        state.stop(name)
    if state.added_address and not state.created_netns:
        with contextlib.suppress(UpError):
            _ip("-n", state.netns, "addr", "del", *state.added_address.split())
    if state.created_netns:
        leftover = _pids(state.netns)
        deadline = time.monotonic() + 5  # a probe killed on interrupt may still be exiting
        while leftover and time.monotonic() < deadline:
            time.sleep(0.1)
            leftover = _pids(state.netns)
        if leftover:
            raise UpError(f"namespace {state.netns} still holds processes {leftover}: not removing it")
        with contextlib.suppress(UpError):
            _ip("netns", "del", state.netns)
    for path in reversed(state.created):
        p = Path(path)
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if state.created_dir:
        with contextlib.suppress(OSError):
            Path(state.dir).rmdir()


def _pids(netns: str) -> list[str]:
    res = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True, check=False)
    return res.stdout.split()
