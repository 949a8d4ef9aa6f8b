"""`meshd cleanup`: uninstall from this node: remove every link, peer, route, FDB and neighbour entry meshd
owns, and our node's meshd.io/* annotations. Nothing meshd does not own is touched. The key file stays."""

from __future__ import annotations

import argparse
import asyncio
import logging

from meshd.agent.settings import Settings
from meshd.cli.flags import add_agent_flags, settings_from

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "cleanup", help="remove everything meshd owns on this node, and its annotations"
    )
    add_agent_flags(p)
    p.add_argument("--keep-annotations", action="store_true", help="leave the node's annotations alone")
    p.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    return asyncio.run(
        cleanup(settings_from(args, require_record=False), annotations=not args.keep_annotations)
    )


async def cleanup(settings: Settings, *, annotations: bool) -> int:
    from keys.values import PrivateKey
    from meshd.agent.dataplane import Dataplane
    from meshd.agent.guards import SavedGuards, guard_file
    from meshd.agent.teardown import remove_annotations, teardown_dataplane
    from meshd.agent.wiring import make_datastore, make_wireguard
    from meshd.core.moves import Moves
    from overlay.guards import NetlinkGuards
    from overlay.routes import NetlinkRouteTable
    from vxlan.links import NetlinkLinks, ipip_supported

    # A throwaway key: the device object is only observed and deleted, never configured with it.
    wireguard = await make_wireguard(settings, PrivateKey.generate())
    links, routes, kernel_guards = NetlinkLinks(), NetlinkRouteTable(), NetlinkGuards()
    guards = SavedGuards(kernel_guards, guard_file(settings.agent.key_file))  # emptied: the file goes too
    try:
        dataplane = Dataplane(
            settings.backends.names, links, routes, wireguard, await ipip_supported(), guards
        )
        changes = await teardown_dataplane(dataplane)
    finally:
        await links.close()
        await routes.close()
        await kernel_guards.close()
    print(f"removed {changes} kernel object(s) owned by meshd")
    if annotations:
        datastore = make_datastore(settings, Moves(), register=False)  # no one follows its records
        await datastore.start()
        try:
            await remove_annotations(datastore, settings.agent.node_name)
        finally:
            await datastore.close()
        print(f"removed the meshd.io/* annotations of node {settings.agent.node_name}")
    return 0
