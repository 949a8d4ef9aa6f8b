"""The `MeshConfig` custom resource: whole objects (apiVersion/kind/metadata/spec) <-> `MeshConfig` values.

Pure. Strict: unknown fields, wrong types (a boolean is not an integer) and out-of-range values raise
`ConfigError` with a one-line message that starts with the field path, e.g.
`spec.wireguard.listenprot: unknown field`. `null` on an object-valued field means "absent".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from meshd.core.codec.text import json_type, one_line, show
from meshd.core.duration import DurationError, format_duration, parse_duration
from meshd.core.model import (
    EncryptionMode,
    Fallback,
    LabelRequirement,
    LabelSelector,
    MeshConfig,
    SelectorOperator,
    VxlanSettings,
    WireGuardSettings,
)
from meshd.errors import ConfigError

API_VERSION = "meshd.io/v1alpha1"
KIND = "MeshConfig"
DEFAULT_NAME = "default"
OPERATORS = tuple(op.value for op in SelectorOperator)
_WITH_VALUES = frozenset({SelectorOperator.IN, SelectorOperator.NOT_IN})
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]{1,63}")
_E = TypeVar("_E", bound=StrEnum)
MIN_KEY_ROTATION = 10.0
"""The shortest `keyRotationInterval` (seconds) other than 0: one rotation takes a few datastore round trips."""
MAX_KEY_ROTATION = 87600 * 3600.0
"""The longest (10 years)."""


def _fail(path: str, problem: str) -> ConfigError:
    return ConfigError(one_line(f"{path}: {problem}", 300))


def _join(path: str, key: object) -> str:
    name = key if isinstance(key, str) and _PLAIN_KEY.fullmatch(key) else f"[{show(key)}]"
    return f"{path}.{name}" if path else name


def _object(value: object, path: str, fields: Sequence[str] | None) -> Mapping[Any, Any]:
    """An object (null = empty); with `fields`, any other key is an error."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(path, f"expected an object, got {json_type(value)}")
    if fields is not None:
        for key in value:
            if key not in fields:
                raise _fail(_join(path, key), "unknown field")
    return value


def _list(value: object, path: str) -> Sequence[object]:
    """A list; `null` (absent) is the empty list."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise _fail(path, f"expected a list, got {json_type(value)}")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {json_type(value)}")
    return value


def _choice(value: object, path: str, enum: type[_E]) -> _E:
    text = _string(value, path)
    for member in enum:
        if member.value == text:
            return member
    names = ", ".join(m.value for m in enum)
    raise _fail(path, f"expected one of {names}, got {show(text)}")


def _int(value: object, path: str, lo: int, hi: int, *, zero_ok: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"expected an integer, got {json_type(value)}")
    if not (lo <= value <= hi or (zero_ok and value == 0)):
        expected = f"0 or an integer in {lo}..{hi}" if zero_ok else f"an integer in {lo}..{hi}"
        raise _fail(path, f"expected {expected}, got {show(value)}")
    return value


def decode_meshconfig(obj: Mapping[str, Any] | None) -> MeshConfig:
    """The MeshConfig an object describes; None (no object) gives the defaults. Raises ConfigError."""
    if obj is None:
        return MeshConfig()
    root = _object(obj, "MeshConfig", None)
    for key in root:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            raise _fail(_join("", key), "unknown field")
    for key, want in (("apiVersion", API_VERSION), ("kind", KIND)):
        if key in root and _string(root[key], key) != want:
            raise _fail(key, f"expected {want!r}, got {show(root[key])}")
    meta = _object(root.get("metadata"), "metadata", None)
    generation = _int(meta.get("generation", 0), "metadata.generation", 0, 2**63 - 1)
    spec = _object(root.get("spec"), "spec", ("encryption", "fallback", "wireguard", "vxlan"))
    encryption = _object(spec.get("encryption"), "spec.encryption", ("mode", "nodeSelector"))
    mode = EncryptionMode.ENABLED
    if "mode" in encryption:
        mode = _choice(encryption["mode"], "spec.encryption.mode", EncryptionMode)
    fallback = Fallback.VXLAN
    if "fallback" in spec:
        fallback = _choice(spec["fallback"], "spec.fallback", Fallback)
    return MeshConfig(
        mode=mode,
        node_selector=_selector(encryption.get("nodeSelector"), "spec.encryption.nodeSelector"),
        fallback=fallback,
        wireguard=_wireguard(spec.get("wireguard"), "spec.wireguard"),
        vxlan=_vxlan(spec.get("vxlan"), "spec.vxlan"),
        generation=generation,
    )


PSK_INTERVAL = (10.0, 86400.0)  # pskRotationInterval: 10s..24h


class _Switch(StrEnum):
    ENABLED = "Enabled"
    DISABLED = "Disabled"


WIREGUARD_FIELDS = (
    "listenPort", "mtu", "persistentKeepalive", "keyRotationInterval", "postQuantum", "pskRotationInterval"
)  # fmt: skip


def _duration(value: object, path: str) -> float:
    try:
        return parse_duration(_string(value, path))
    except DurationError as exc:
        raise _fail(path, str(exc)) from None


def _interval(value: object, path: str, lo: float, hi: float) -> float:
    seconds = _duration(value, path)
    if not lo <= seconds <= hi:
        raise _fail(
            path, f"must be between {format_duration(lo)} and {format_duration(hi)}, got {show(value)}"
        )
    return seconds


def _wireguard(value: object, path: str) -> WireGuardSettings:
    wg = _object(value, path, WIREGUARD_FIELDS)
    d = WireGuardSettings()
    pq = _choice(wg.get("postQuantum", _Switch.DISABLED.value), f"{path}.postQuantum", _Switch)
    interval = wg.get("pskRotationInterval", format_duration(d.psk_rotation_interval))
    return WireGuardSettings(
        key_rotation_interval=_rotation(wg.get("keyRotationInterval", "0s"), f"{path}.keyRotationInterval"),
        post_quantum=pq == _Switch.ENABLED,
        psk_rotation_interval=_interval(interval, f"{path}.pskRotationInterval", *PSK_INTERVAL),
        listen_port=_int(wg.get("listenPort", d.listen_port), f"{path}.listenPort", 1, 65535),
        mtu=_int(wg.get("mtu", d.mtu), f"{path}.mtu", 1280, 9000, zero_ok=True),
        persistent_keepalive=_int(
            wg.get("persistentKeepalive", d.persistent_keepalive), f"{path}.persistentKeepalive", 0, 65535
        ),
    )


def _rotation(value: object, path: str) -> float:
    """A Go-style duration: 0 (never) or MIN_KEY_ROTATION..MAX_KEY_ROTATION seconds."""
    seconds = _duration(value, path)
    if seconds and not MIN_KEY_ROTATION <= seconds <= MAX_KEY_ROTATION:
        raise _fail(path, f'expected "0s" (never) or a duration from 10s to 87600h, got {show(value)}')
    return seconds


def _vxlan(value: object, path: str) -> VxlanSettings:
    vx = _object(value, path, ("vni", "port", "mtu"))
    d = VxlanSettings()
    return VxlanSettings(
        vni=_int(vx.get("vni", d.vni), f"{path}.vni", 1, 2**24 - 1),
        port=_int(vx.get("port", d.port), f"{path}.port", 1, 65535),
        mtu=_int(vx.get("mtu", d.mtu), f"{path}.mtu", 1280, 9000, zero_ok=True),
    )


def _selector(value: object, path: str) -> LabelSelector:
    sel = _object(value, path, ("matchLabels", "matchExpressions"))
    labels = _object(sel.get("matchLabels"), f"{path}.matchLabels", None)
    for k, v in labels.items():
        if not isinstance(k, str):
            raise _fail(_join(f"{path}.matchLabels", k), f"expected a string key, got {json_type(k)}")
        _string(v, _join(f"{path}.matchLabels", k))
    match_labels = tuple(sorted(labels.items()))
    exprs = _list(sel.get("matchExpressions"), f"{path}.matchExpressions")
    requirements = tuple(_requirement(e, f"{path}.matchExpressions[{i}]") for i, e in enumerate(exprs))
    return LabelSelector(match_labels=match_labels, match_expressions=requirements)


def _requirement(value: object, path: str) -> LabelRequirement:
    expr = _object(value, path, ("key", "operator", "values"))
    if "key" not in expr or "operator" not in expr:
        raise _fail(f"{path}.{'key' if 'key' not in expr else 'operator'}", "required field is missing")
    key = _string(expr["key"], f"{path}.key")
    if not key:
        raise _fail(f"{path}.key", "must not be empty")
    operator = _choice(expr["operator"], f"{path}.operator", SelectorOperator)
    raw = _list(expr.get("values"), f"{path}.values")
    values = frozenset(_string(v, f"{path}.values[{i}]") for i, v in enumerate(raw))
    if operator in _WITH_VALUES and not values:
        raise _fail(f"{path}.values", f"must not be empty for operator {operator}")
    if operator not in _WITH_VALUES and values:
        raise _fail(f"{path}.values", f"must be empty for operator {operator}")
    return LabelRequirement(key=key, operator=operator, values=values)


def encode_meshconfig(config: MeshConfig) -> dict[str, Any]:
    """The full MeshConfig object (every field explicit) that `decode_meshconfig` reads back as `config`."""
    selector: dict[str, Any] = {}
    if config.node_selector.match_labels:
        selector["matchLabels"] = dict(config.node_selector.match_labels)
    if config.node_selector.match_expressions:
        selector["matchExpressions"] = [
            _encode_requirement(r) for r in config.node_selector.match_expressions
        ]
    wg, vx = config.wireguard, config.vxlan
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": DEFAULT_NAME, "generation": config.generation},
        "spec": {
            "encryption": {"mode": config.mode.value, "nodeSelector": selector},
            "fallback": config.fallback.value,
            "wireguard": {
                "listenPort": wg.listen_port,
                "mtu": wg.mtu,
                "persistentKeepalive": wg.persistent_keepalive,
                **_rotation_field(wg),
                "postQuantum": (_Switch.ENABLED if wg.post_quantum else _Switch.DISABLED).value,
                "pskRotationInterval": format_duration(wg.psk_rotation_interval),
            },
            "vxlan": {"vni": vx.vni, "port": vx.port, "mtu": vx.mtu},
        },
    }


def _rotation_field(wg: WireGuardSettings) -> dict[str, str]:
    """`keyRotationInterval` when rotation is on (absent means never)."""
    return (
        {"keyRotationInterval": format_duration(wg.key_rotation_interval)} if wg.key_rotation_interval else {}
    )


def _encode_requirement(req: LabelRequirement) -> dict[str, Any]:
    out: dict[str, Any] = {"key": req.key, "operator": req.operator.value}
    if req.values:
        out["values"] = sorted(req.values)
    return out
