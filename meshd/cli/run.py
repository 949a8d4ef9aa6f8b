"""`meshd run`: the agent."""

from __future__ import annotations

import argparse
import asyncio

from meshd.cli.flags import add_agent_flags, settings_from


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("run", help="run the agent (the DaemonSet's command)")
    add_agent_flags(p)
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from meshd.agent.wiring import run_agent

    return asyncio.run(run_agent(settings_from(args)))
