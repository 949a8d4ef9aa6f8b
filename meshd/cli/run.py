"""`meshd run`: the agent."""

from __future__ import annotations

import argparse
import asyncio

from meshd.cli.flags import add_agent_flags, settings_from
from meshd.datastore.bare import bare_packages


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", help="run the agent (the DaemonSet's command)")
    add_agent_flags(p)
    p.set_defaults(func=handle, collect_garbage=False)  # the agent does, after its first pass


def handle(args: argparse.Namespace) -> int:
    # The agent imports the few pyroute2 modules it uses (sockets, message classes), not the package's
    # `__init__`, which imports all of pyroute2 (NDB, IPDB, conntrack, nftables...): ~35 ms of every start.
    bare_packages("pyroute2")
    from meshd.agent.wiring import run_agent

    return asyncio.run(run_agent(settings_from(args)))
