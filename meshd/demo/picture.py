"""The demo's picture of the mesh: `meshd graph` over the demo's file datastore, once every MeshNode
shows the whole mesh on WireGuard (the MeshNodes follow the agents within a few seconds)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from meshd.cli.graph import write_graph
from meshd.core.graph import graph_dot
from meshd.datastore.file_status import list_meshnodes


def _settled(store: Path, names: set[str]) -> bool:
    found = {o["metadata"]["name"]: o.get("status") or {} for o in list_meshnodes(store)}
    return set(found) == names and all(
        {p.get("node") for p in st.get("peers") or ()} == names - {n}
        and all(p.get("transport") == "WireGuard" for p in st.get("peers") or ())
        for n, st in found.items()
    )


def save_graph(store: Path, output: Path, names: set[str], *, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not _settled(store, names) and time.monotonic() < deadline:
        time.sleep(0.2)
    if output.suffix != ".dot" and shutil.which("dot") is None:
        output = output.with_suffix(".dot")  # no Graphviz here: the DOT text, for any Graphviz viewer
    write_graph(graph_dot(list_meshnodes(store)), output)
    print(f"saved a picture of the mesh (meshd graph) to {output}", flush=True)
