"""The agent's settings: one frozen tree, built from flags (each with a MESHD_* env twin) and validated once."""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from meshd.core.model import IPAddress, IPNetwork, Labels
from meshd.core.state import DeviceNames
from meshd.errors import ConfigError

WIREGUARD_MODES = ("auto", "kernel", "userspace")


@dataclass(frozen=True, slots=True)
class Settings:
    node_name: str
    """This node's name (Kubernetes: from spec.nodeName through the downward API)."""
    datastore: str = "kubernetes"
    """`kubernetes`, or `file:DIR` for the embedded file datastore."""
    kubeconfig: Path | None = None
    """Kubeconfig file; None means in-cluster configuration."""
    key_file: Path = Path("/var/lib/meshd/private.key")
    """Where the node's WireGuard private key lives (mode 0600, created once)."""
    names: DeviceNames = field(default_factory=DeviceNames)
    """Names of the links meshd owns."""
    wireguard: str = "auto"
    """auto (kernel module, else wireguard-go), kernel or userspace."""
    underlay_ip: IPAddress | None = None
    """Overrides the InternalIP of our node record: where peers reach us."""
    pod_cidrs: tuple[IPNetwork, ...] = ()
    """Our pod CIDRs (file datastore; in Kubernetes they come from spec.podCIDRs)."""
    labels: Labels = ()
    """Labels of our node record (file datastore only)."""
    metrics_addr: str = ":9473"
    """Where /metrics, /healthz, /readyz and /status are served."""
    resync: float = 30.0
    """Seconds between full reconcile passes when nothing triggers one."""
    cni_conf_dir: Path | None = None
    """When set, write a CNI conflist for our pod CIDRs there."""
    run_dir: Path = Path("/var/run/meshd")
    """wireguard-go logs and PID files."""

    @property
    def file_dir(self) -> Path | None:
        return Path(self.datastore[5:]) if self.datastore.startswith("file:") else None


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"MESHD_{name}", default)


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-name", default=env("NODE_NAME"), help="this node's name [MESHD_NODE_NAME]")
    p.add_argument(
        "--datastore", default=env("DATASTORE", "kubernetes"), help="kubernetes or file:DIR [MESHD_DATASTORE]"
    )
    p.add_argument(
        "--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig (default: in-cluster) [MESHD_KUBECONFIG]"
    )
    p.add_argument(
        "--key-file", default=env("KEY_FILE", "/var/lib/meshd/private.key"), help="[MESHD_KEY_FILE]"
    )
    p.add_argument(
        "--interface", default=env("INTERFACE", "meshd0"), help="WireGuard link name [MESHD_INTERFACE]"
    )
    p.add_argument(
        "--vxlan-interface", default=env("VXLAN_INTERFACE", "meshd-vxlan"), help="[MESHD_VXLAN_INTERFACE]"
    )
    p.add_argument(
        "--ipip-interface", default=env("IPIP_INTERFACE", "meshd-ipip"), help="[MESHD_IPIP_INTERFACE]"
    )
    p.add_argument(
        "--wireguard", default=env("WIREGUARD", "auto"), help="auto|kernel|userspace [MESHD_WIREGUARD]"
    )
    p.add_argument(
        "--underlay-ip", default=env("UNDERLAY_IP"), help="where peers reach us [MESHD_UNDERLAY_IP]"
    )
    p.add_argument(
        "--pod-cidr",
        action="append",
        default=None,
        help="our pod CIDR, repeatable (file datastore) [MESHD_POD_CIDR, comma list]",
    )
    p.add_argument(
        "--label", action="append", default=None, help="KEY=VALUE label of our record (file datastore)"
    )
    p.add_argument("--metrics-addr", default=env("METRICS_ADDR", ":9473"), help="[MESHD_METRICS_ADDR]")
    p.add_argument("--resync", default=env("RESYNC", "30"), help="seconds between full passes [MESHD_RESYNC]")
    p.add_argument(
        "--cni-conf-dir", default=env("CNI_CONF_DIR"), help="write a CNI conflist there [MESHD_CNI_CONF_DIR]"
    )
    p.add_argument("--run-dir", default=env("RUN_DIR", "/var/run/meshd"), help="[MESHD_RUN_DIR]")


def settings_from(args: argparse.Namespace, *, require_record: bool = True) -> Settings:
    """Validate the flags once; every problem is a ConfigError with a one-line reason."""
    if not args.node_name:
        raise ConfigError("--node-name (or MESHD_NODE_NAME) is required")
    if args.datastore != "kubernetes" and not (
        args.datastore.startswith("file:") and len(args.datastore) > 5
    ):
        raise ConfigError(f"--datastore {args.datastore!r}: expected 'kubernetes' or 'file:DIR'")
    if args.wireguard not in WIREGUARD_MODES:
        raise ConfigError(f"--wireguard {args.wireguard!r}: expected one of {', '.join(WIREGUARD_MODES)}")
    raw_cidrs = (
        args.pod_cidr if args.pod_cidr is not None else [c for c in (env("POD_CIDR") or "").split(",") if c]
    )
    try:
        cidrs = tuple(ipaddress.ip_network(c.strip()) for c in raw_cidrs)
    except ValueError as exc:
        raise ConfigError(f"--pod-cidr: {exc}") from exc
    try:
        underlay = ipaddress.ip_address(args.underlay_ip) if args.underlay_ip else None
    except ValueError as exc:
        raise ConfigError(f"--underlay-ip: {exc}") from exc
    try:
        resync = float(args.resync)
    except ValueError:
        resync = -1
    if not 0.1 <= resync <= 86400:
        raise ConfigError(f"--resync {args.resync!r}: expected seconds between 0.1 and 86400")
    labels = []
    for item in args.label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label {item!r}: expected KEY=VALUE")
        labels.append((key, value))
    for flag, name in (("--interface", args.interface), ("--vxlan-interface", args.vxlan_interface)):
        if not 1 <= len(name) <= 15 or "/" in name or " " in name:
            raise ConfigError(f"{flag} {name!r}: a link name has 1 to 15 characters, no '/' or spaces")
    settings = Settings(
        node_name=args.node_name,
        datastore=args.datastore,
        kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None,
        key_file=Path(args.key_file),
        names=DeviceNames(wireguard=args.interface, vxlan=args.vxlan_interface, ipip=args.ipip_interface),
        wireguard=args.wireguard,
        underlay_ip=underlay,
        pod_cidrs=cidrs,
        labels=tuple(sorted(labels)),
        metrics_addr=args.metrics_addr,
        resync=resync,
        cni_conf_dir=Path(args.cni_conf_dir) if args.cni_conf_dir else None,
        run_dir=Path(args.run_dir),
    )
    if require_record and settings.file_dir is not None and (underlay is None or not cidrs):
        raise ConfigError("the file datastore needs --underlay-ip and at least one --pod-cidr")
    return settings
