"""The fake API server's object store: one global resourceVersion counter (like etcd's revision), an event
log that can be compacted, optimistic concurrency, and the three PATCH flavours. Pure and synchronous; the
HTTP layer (server.py) calls it from one event loop thread."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
Listener = Callable[["Event"], None]


@dataclass(frozen=True, slots=True)
class Kind:
    resource: str  # plural, as in the URL
    kind: str
    api_version: str
    prefix: str  # URL prefix of the collection
    has_generation: bool = False


KINDS = {
    "nodes": Kind("nodes", "Node", "v1", "/api/v1/nodes"),
    "meshconfigs": Kind(
        "meshconfigs", "MeshConfig", "meshd.io/v1alpha1", "/apis/meshd.io/v1alpha1/meshconfigs", True
    ),
    # what the agent's status side writes (namespaced kinds in the namespaces meshd uses by default)
    "meshnodes": Kind("meshnodes", "MeshNode", "meshd.io/v1alpha1", "/apis/meshd.io/v1alpha1/meshnodes"),
    "leases": Kind(
        "leases",
        "Lease",
        "coordination.k8s.io/v1",
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases",
    ),
    "events": Kind("events", "Event", "v1", "/api/v1/namespaces/default/events"),
}


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return status_body(self.code, self.reason, self.message)


def status_body(code: int, reason: str, message: str) -> Obj:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    resource: str
    type: str  # ADDED | MODIFIED | DELETED
    object: Obj


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386. Strategic merge patch is the same for the maps we use (lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key != "$patch":
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiError(422, "Invalid", f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise ApiError(422, "Invalid", f"path element {part!r} not found")
    return doc


def json_patch(doc: Obj, ops: list[Obj]) -> Obj:
    """RFC 6902 (add, remove, replace, move, copy, test). A failed `test` or a bad path is 422."""
    doc = copy.deepcopy(doc)
    for op in ops:
        name, parts = op.get("op"), _pointer(str(op.get("path", "")))
        if name == "test":
            if _walk(doc, parts) != op.get("value"):
                raise ApiError(422, "Invalid", f"test operation failed at {op.get('path')}")
            continue
        if name in ("move", "copy"):
            value = copy.deepcopy(_walk(doc, _pointer(str(op.get("from", "")))))
            if name == "move":
                _remove(doc, _pointer(str(op["from"])))
            _add(doc, parts, value)
        elif name == "remove":
            _remove(doc, parts)
        elif name == "replace":
            _remove(doc, parts)
            _add(doc, parts, copy.deepcopy(op.get("value")))
        elif name == "add":
            _add(doc, parts, copy.deepcopy(op.get("value")))
        else:
            raise ApiError(422, "Invalid", f"unknown JSON patch op {name!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> None:
    if not parts:
        raise ApiError(422, "Invalid", "cannot replace the whole object")
    parent = _walk(doc, parts[:-1])
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and (last == "-" or (last.isdigit() and int(last) <= len(parent))):
        parent.insert(len(parent) if last == "-" else int(last), value)
    else:
        raise ApiError(422, "Invalid", f"cannot add at {last!r}")


def _remove(doc: Any, parts: list[str]) -> None:
    _walk(doc, parts)  # 422 when missing
    parent = _walk(doc, parts[:-1])
    del parent[int(parts[-1]) if isinstance(parent, list) else parts[-1]]


def matches(obj: Obj, label_selector: str | None, field_selector: str | None) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            ok = labels.get(k.strip()) != v.strip()
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            ok = labels.get(k.strip()) == v.strip()
        else:
            ok = (term.strip()[1:] not in labels) if term.strip().startswith("!") else term.strip() in labels
        if not ok:
            return False
    name = obj.get("metadata", {}).get("name")
    for term in filter(None, (field_selector or "").split(",")):
        neg = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        if key.strip() != "metadata.name":
            raise ApiError(400, "BadRequest", f"field label not supported: {key}")
        if (name == value.strip()) == neg:
            return False
    return True


@dataclass
class Store:
    rv: int = 1
    compacted: int = 0  # watches from a resourceVersion below this get 410 Gone
    objects: dict[str, dict[str, Obj]] = field(default_factory=lambda: {r: {} for r in KINDS})
    log: list[Event] = field(default_factory=list)
    listeners: dict[int, tuple[str, Listener]] = field(default_factory=dict)

    # -- reads
    def get(self, resource: str, name: str) -> Obj:
        try:
            return copy.deepcopy(self.objects[resource][name])
        except KeyError:
            raise ApiError(404, "NotFound", f'{resource} "{name}" not found') from None

    def list_objects(
        self, resource: str, label_selector: str | None = None, field_selector: str | None = None
    ) -> Obj:
        """The stored objects themselves, not copies (a write stores a new object, never changes one), for
        callers that serialize them: deep-copying 5000 nodes took 55 ms that kube-apiserver does not spend."""
        k, items = KINDS[resource], [o for _, o in sorted(self.objects[resource].items())]
        return {
            "kind": k.kind + "List",
            "apiVersion": k.api_version,
            "metadata": {"resourceVersion": str(self.rv)},
            "items": [o for o in items if matches(o, label_selector, field_selector)],
        }

    def events_since(self, resource: str, rv: int) -> list[Event]:
        if rv < self.compacted:
            raise ApiError(410, "Expired", f"too old resource version: {rv} ({self.compacted})")
        return [e for e in self.log if e.resource == resource and e.rv > rv]

    def subscribe(self, resource: str, listener: Listener) -> Callable[[], None]:
        token = id(listener)
        self.listeners[token] = (resource, listener)

        def unsubscribe() -> None:
            self.listeners.pop(token, None)

        return unsubscribe

    def compact(self) -> int:
        self.compacted, self.log = self.rv, []
        return self.compacted

    # -- writes
    def create(self, resource: str, obj: Obj) -> Obj:
        k, obj = KINDS[resource], copy.deepcopy(obj)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if name in self.objects[resource]:
            raise ApiError(409, "AlreadyExists", f'{resource} "{name}" already exists')
        obj.update(kind=k.kind, apiVersion=k.api_version)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp="2024-01-01T00:00:00Z")
        if k.has_generation:
            meta["generation"] = 1
        return self._commit(resource, obj, "ADDED")

    def update(self, resource: str, name: str, obj: Obj) -> Obj:
        old = self.get(resource, name)
        meta = obj.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name in the URL")
        given = meta.get("resourceVersion")
        if given not in (None, "") and given != old["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource} "{name}": '
                "the object has been modified; please apply your changes to the latest version",
            )
        for key in ("uid", "creationTimestamp", "generation"):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
        meta["name"] = name
        k = KINDS[resource]
        obj.update(kind=k.kind, apiVersion=k.api_version)
        if k.has_generation and obj.get("spec") != old.get("spec"):
            meta["generation"] = old["metadata"].get("generation", 0) + 1
        if {**obj, "metadata": {**meta, "resourceVersion": old["metadata"]["resourceVersion"]}} == old:
            return old  # a no-op write does not bump the resourceVersion, like the real server
        return self._commit(resource, obj, "MODIFIED")

    def patch(self, resource: str, name: str, content_type: str, body: Any) -> Obj:
        old = self.get(resource, name)
        if content_type.startswith("application/json-patch+json"):
            if not isinstance(body, list):
                raise ApiError(400, "BadRequest", "a JSON patch is a list of operations")
            new = json_patch(old, body)
        elif content_type.partition(";")[0] in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch is an object")
            new = merge_patch(old, body)
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")
        return self.update(resource, name, new)  # a resourceVersion in the patch acts as a precondition

    def delete(self, resource: str, name: str) -> Obj:
        old = self.get(resource, name)
        del self.objects[resource][name]
        self.rv += 1
        old["metadata"]["resourceVersion"] = str(self.rv)
        self._emit(Event(self.rv, resource, "DELETED", old))
        return old

    def _commit(self, resource: str, obj: Obj, kind: str) -> Obj:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[resource][obj["metadata"]["name"]] = obj
        self._emit(Event(self.rv, resource, kind, copy.deepcopy(obj)))
        return copy.deepcopy(obj)

    def _emit(self, event: Event) -> None:
        self.log.append(event)
        for resource, listener in list(self.listeners.values()):
            if resource == event.resource:
                listener(event)
