"""`meshd graph [--datastore file:DIR | kubernetes] [--kubeconfig PATH] --output FILE.svg|.dot`: a picture
of the mesh from the MeshNodes (meshd.core.graph), laid out by Graphviz (`dot`, Debian's `graphviz`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from meshd.agent.settings import FILE_PREFIX, KUBERNETES
from meshd.core.graph import graph_dot
from meshd.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("graph", help="draw the mesh (nodes, pairs by transport and encryption)")
    p.add_argument("--datastore", default=KUBERNETES, help=f"{KUBERNETES} or {FILE_PREFIX}DIR")
    p.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig (default: $KUBECONFIG, ~/.kube/config, else in-cluster)",
    )
    p.add_argument("--output", required=True, help="FILE.svg (Graphviz) or FILE.dot")
    p.set_defaults(func=handle)


def kubeconfig_path(flag: str | None) -> Path | None:
    """Like kubectl: the flag, else the first file of $KUBECONFIG, else ~/.kube/config; None: in-cluster."""
    if flag:
        return Path(flag)
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return Path(env.split(os.pathsep)[0])
    home = Path.home() / ".kube" / "config"
    return home if home.is_file() else None


async def _from_api(kubeconfig: str | None) -> list[dict[str, Any]]:
    from meshd.datastore.k8s_status import KubeStatusStore

    store = KubeStatusStore(kubeconfig=kubeconfig_path(kubeconfig))
    try:
        return await store.list_meshnodes()
    finally:
        await store.close()


def read_meshnodes(datastore: str, kubeconfig: str | None) -> list[dict[str, Any]]:
    if datastore.startswith(FILE_PREFIX):
        from meshd.datastore.file_status import list_meshnodes

        directory = Path(datastore.removeprefix(FILE_PREFIX))
        if not directory.is_dir():
            raise ConfigError(f"--datastore: {directory} is not a directory")
        return list_meshnodes(directory)
    if datastore != KUBERNETES:
        raise ConfigError(f"--datastore must be {KUBERNETES} or {FILE_PREFIX}DIR, not {datastore!r}")
    return asyncio.run(_from_api(kubeconfig))


def write_graph(dot: str, output: Path) -> None:
    """FILE.dot: the DOT text; FILE.svg (or any other Graphviz format by suffix): rendered by `dot`."""
    fmt = output.suffix.lstrip(".").lower()
    if fmt == "dot":
        output.write_text(dot)
        return
    if fmt not in ("svg", "png", "pdf"):
        raise ConfigError(f"--output: use FILE.svg, FILE.png, FILE.pdf or FILE.dot, not {output.name!r}")
    exe = shutil.which("dot")
    if exe is None:
        raise ConfigError(
            "Graphviz's `dot` is not installed (Debian: apt-get install graphviz); use FILE.dot"
        )
    done = subprocess.run(
        [exe, f"-T{fmt}", "-o", str(output)],
        input=dot.encode(),
        capture_output=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")


def handle(args: argparse.Namespace) -> int:
    meshnodes = read_meshnodes(args.datastore, args.kubeconfig)
    output = Path(args.output)
    write_graph(graph_dot(meshnodes), output)
    print(f"wrote {output}: {len(meshnodes)} nodes")
    return 0
