"""The agent's settings: one frozen tree grouped by concern, with every default written here once.

`meshd.cli.flags` builds it from the command line (each flag has a MESHD_* environment twin) and
validates it once; the parts are then passed to what uses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from meshd.core.model import IPAddress, IPNetwork, Labels
from meshd.core.state import DeviceNames
from meshd.datastore.settings import WatchSettings
from meshd.retry import Backoff
from overlay.wireguard import DEFAULT_RUN_DIR
from overlay.wireguard import MODES as WIREGUARD_MODES

__all__ = [
    "WIREGUARD_MODES",
    "AgentSettings",
    "BackendSettings",
    "DatastoreSettings",
    "HttpSettings",
    "WatchSettings",
]
KUBERNETES, FILE_PREFIX = "kubernetes", "file:"
STATUS_SOCKET = "status.sock"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """This node and its reconcile loop."""

    node_name: str
    """This node's name (Kubernetes: from spec.nodeName through the downward API)."""
    underlay_ip: IPAddress | None = None
    """Overrides the InternalIP of our node record: where peers reach us."""
    pod_cidrs: tuple[IPNetwork, ...] = ()
    """Our pod CIDRs (file datastore; in Kubernetes they come from spec.podCIDRs)."""
    labels: Labels = ()
    """Labels of our node record (file datastore only)."""
    key_file: Path = Path("/var/lib/meshd/private.key")
    """Where the node's WireGuard private key lives (mode 0600, created once)."""
    resync: float = 30.0
    """Seconds between full reconcile passes when nothing triggers one; also the retry interval of a pass
    that failed for a permanent reason."""
    retry: Backoff = field(default_factory=Backoff)
    """Backoff of a pass that failed for a transient reason."""
    cni_conf_dir: Path | None = None
    """When set, write a CNI conflist for our pod CIDRs there."""
    run_dir: Path = DEFAULT_RUN_DIR
    """wireguard-go logs and PID files, and the /status socket."""
    post_quantum: bool = True
    """Take part in post-quantum PSK exchanges when the MeshConfig enables them (False: opt this node out)."""

    @property
    def status_socket(self) -> Path:
        return status_socket(self.run_dir)


def status_socket(run_dir: Path) -> Path:
    """The unix socket (mode 0600) that serves /status to `meshd status` on this node only."""
    return run_dir / STATUS_SOCKET


@dataclass(frozen=True, slots=True)
class DatastoreSettings:
    """Where nodes and the MeshConfig live."""

    kind: str = KUBERNETES
    """`kubernetes`, or `file:DIR` for the embedded file datastore."""
    kubeconfig: Path | None = None
    """Kubeconfig file; None means in-cluster configuration."""
    watch: WatchSettings = field(default_factory=WatchSettings)
    """Kubernetes watch and retry timings."""
    rescan_interval: float = 30.0
    """Seconds between two full scans of the file datastore's directory: the safety net behind inotify,
    which reports each change as it happens."""

    @property
    def file_dir(self) -> Path | None:
        directory = self.kind.removeprefix(FILE_PREFIX)
        return Path(directory) if self.kind.startswith(FILE_PREFIX) and directory else None


@dataclass(frozen=True, slots=True)
class BackendSettings:
    """The kernel side: which WireGuard implementation, and the names of the links meshd owns."""

    wireguard: str = WIREGUARD_MODES[0]
    """auto (kernel module, else wireguard-go), kernel or userspace."""
    names: DeviceNames = field(default_factory=DeviceNames)
    """Names of the links meshd owns."""


@dataclass(frozen=True, slots=True)
class HttpSettings:
    """What the agent serves over HTTP."""

    metrics_addr: str = ":9473"
    """Where /metrics, /healthz and /readyz are served (/status is served on the local socket only)."""


@dataclass(frozen=True, slots=True)
class Settings:
    agent: AgentSettings
    datastore: DatastoreSettings = field(default_factory=DatastoreSettings)
    backends: BackendSettings = field(default_factory=BackendSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
