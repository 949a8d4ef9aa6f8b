"""`meshd demo [--nodes N]`: the whole mesh in network namespaces on this machine, with a traffic test."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo", help="run a whole mesh in network namespaces here (root), then clean up"
    )
    p.add_argument("--nodes", type=int, default=3, help="how many nodes (2-20, default 3)")
    p.add_argument(
        "--graph", default=None, help="where to save the picture of the mesh (default TMPDIR/meshd-demo.svg)"
    )
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from meshd.demo.run import main

    return main(args.nodes, graph=args.graph)
