"""The agent's flags (each with a MESHD_* environment twin), read into the settings tree and validated once.
Defaults come from the settings tree."""

from __future__ import annotations

import argparse
import ipaddress
import os
from pathlib import Path

from meshd.agent.settings import (
    FILE_PREFIX,
    KUBERNETES,
    WIREGUARD_MODES,
    AgentSettings,
    BackendSettings,
    DatastoreSettings,
    HttpSettings,
    Settings,
)
from meshd.core.model import IPAddress, IPNetwork, Labels
from meshd.core.state import DeviceNames
from meshd.errors import ConfigError

AGENT, BACKENDS, HTTP = AgentSettings(node_name=""), BackendSettings(), HttpSettings()


def env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"MESHD_{name}", default)


def _flag(p: argparse.ArgumentParser, flag: str, default: object, text: str = "") -> None:
    """`--some-flag` with its MESHD_SOME_FLAG twin; the default is the settings tree's."""
    name = flag.removeprefix("--").replace("-", "_").upper()
    value = env(name, None if default is None else str(default))
    shown = f" (default {default})" if default is not None and default != "" else ""
    p.add_argument(flag, default=value, help=f"{text}{shown} [MESHD_{name}]".strip())


def add_run_dir_flag(p: argparse.ArgumentParser) -> None:
    _flag(p, "--run-dir", AGENT.run_dir, "wireguard-go files and the /status socket")


def add_agent_flags(p: argparse.ArgumentParser) -> None:
    names = BACKENDS.names
    _flag(p, "--node-name", None, "this node's name")
    _flag(p, "--datastore", DatastoreSettings().kind, f"{KUBERNETES} or {FILE_PREFIX}DIR")
    _flag(p, "--kubeconfig", None, "kubeconfig (default: in-cluster)")
    _flag(p, "--key-file", AGENT.key_file, "the node's private key")
    _flag(p, "--interface", names.wireguard, "WireGuard link name")
    _flag(p, "--vxlan-interface", names.vxlan, "VXLAN link name")
    _flag(p, "--ipip-interface", names.ipip, "IPIP link name")
    _flag(p, "--wireguard", BACKENDS.wireguard, "|".join(WIREGUARD_MODES))
    _flag(p, "--underlay-ip", None, "where peers reach us")
    p.add_argument(
        "--pod-cidr",
        action="append",
        default=None,
        help="our pod CIDR, repeatable (file datastore) [MESHD_POD_CIDR, comma list]",
    )
    p.add_argument(
        "--label", action="append", default=None, help="KEY=VALUE label of our record (file datastore)"
    )
    _flag(p, "--metrics-addr", HTTP.metrics_addr, "/metrics, /healthz, /readyz")
    _flag(p, "--resync", AGENT.resync, "seconds between resync passes (every 10th reads the whole kernel)")
    _flag(p, "--cni-conf-dir", None, "write a CNI conflist there")
    _flag(p, "--post-quantum", "on", "on|off: take part in post-quantum PSKs when MeshConfig enables them")
    add_run_dir_flag(p)


def settings_from(args: argparse.Namespace, *, require_record: bool = True) -> Settings:
    """Validate the flags once; every problem is a ConfigError with a one-line reason."""
    if not args.node_name:
        raise ConfigError("--node-name (or MESHD_NODE_NAME) is required")
    datastore = DatastoreSettings(
        kind=args.datastore, kubeconfig=Path(args.kubeconfig) if args.kubeconfig else None
    )
    if args.datastore != KUBERNETES and not datastore.file_dir:
        raise ConfigError(f"--datastore {args.datastore!r}: expected '{KUBERNETES}' or '{FILE_PREFIX}DIR'")
    if args.wireguard not in WIREGUARD_MODES:
        raise ConfigError(f"--wireguard {args.wireguard!r}: expected one of {', '.join(WIREGUARD_MODES)}")
    agent = AgentSettings(
        node_name=args.node_name,
        underlay_ip=_address(args.underlay_ip),
        pod_cidrs=_cidrs(args.pod_cidr),
        labels=_labels(args.label),
        key_file=Path(args.key_file),
        resync=_resync(args.resync),
        cni_conf_dir=Path(args.cni_conf_dir) if args.cni_conf_dir else None,
        run_dir=Path(args.run_dir),
        post_quantum=_on_off("--post-quantum", args.post_quantum),
    )
    if (
        require_record
        and datastore.file_dir is not None
        and (agent.underlay_ip is None or not agent.pod_cidrs)
    ):
        raise ConfigError("the file datastore needs --underlay-ip and at least one --pod-cidr")
    return Settings(
        agent=agent,
        datastore=datastore,
        backends=BackendSettings(wireguard=args.wireguard, names=_names(args)),
        http=HttpSettings(metrics_addr=args.metrics_addr),
    )


def _names(args: argparse.Namespace) -> DeviceNames:
    flags = (
        ("--interface", args.interface),
        ("--vxlan-interface", args.vxlan_interface),
        ("--ipip-interface", args.ipip_interface),
    )
    for flag, name in flags:
        if not 1 <= len(name) <= 15 or "/" in name or " " in name:
            raise ConfigError(f"{flag} {name!r}: a link name has 1 to 15 characters, no '/' or spaces")
    return DeviceNames(wireguard=args.interface, vxlan=args.vxlan_interface, ipip=args.ipip_interface)


def _cidrs(flags: list[str] | None) -> tuple[IPNetwork, ...]:
    raw = flags if flags is not None else [c for c in (env("POD_CIDR") or "").split(",") if c]
    try:
        return tuple(ipaddress.ip_network(c.strip()) for c in raw)
    except ValueError as exc:
        raise ConfigError(f"--pod-cidr: {exc}") from exc


def _address(value: str | None) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value) if value else None
    except ValueError as exc:
        raise ConfigError(f"--underlay-ip: {exc}") from exc


def _on_off(flag: str, value: str) -> bool:
    if value not in ("on", "off"):
        raise ConfigError(f"{flag} {value!r}: expected on or off")
    return value == "on"


def _resync(value: str) -> float:
    try:
        resync = float(value)
    except ValueError:
        resync = -1
    if not 0.1 <= resync <= 86400:
        raise ConfigError(f"--resync {value!r}: expected seconds between 0.1 and 86400")
    return resync


def _labels(items: list[str] | None) -> Labels:
    labels = []
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--label {item!r}: expected KEY=VALUE")
        labels.append((key, value))
    return tuple(sorted(labels))
