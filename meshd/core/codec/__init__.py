"""The pure codec between datastore objects and domain values (re-exports; see the modules).

- `meshd.core.codec.node`: Kubernetes-Node-shaped dicts <-> `Node`/`InvalidNode`.
- `meshd.core.codec.annotations`: our `meshd.io/*` annotations and their values.
- `meshd.core.codec.config`: `MeshConfig` objects <-> `MeshConfig`.
No I/O, no clock, no DNS; importable without pyroute2, kubernetes or prometheus_client.
"""

from meshd.core.codec.annotations import (
    ANNOTATIONS,
    CAPABILITIES,
    ENDPOINT,
    KEY_PROOF,
    OBSERVED_GENERATION,
    PREFIX,
    PUBLIC_KEY,
    UNDERLAY_IP,
    VXLAN_MAC,
    encode_annotations,
)
from meshd.core.codec.config import API_VERSION, KIND, decode_meshconfig, encode_meshconfig
from meshd.core.codec.node import INVALID_REASONS, decode_node, encode_node

__all__ = [
    "ANNOTATIONS",
    "API_VERSION",
    "CAPABILITIES",
    "ENDPOINT",
    "INVALID_REASONS",
    "KEY_PROOF",
    "KIND",
    "OBSERVED_GENERATION",
    "PREFIX",
    "PUBLIC_KEY",
    "UNDERLAY_IP",
    "VXLAN_MAC",
    "decode_meshconfig",
    "decode_node",
    "encode_annotations",
    "encode_meshconfig",
    "encode_node",
]
