"""Removal of everything meshd owns on a node: the diff from what is there to nothing, applied."""

from __future__ import annotations

import logging

from meshd.agent.dataplane import Dataplane
from meshd.core.codec import ANNOTATIONS
from meshd.core.diff import diff
from meshd.core.ports import Datastore
from meshd.core.state import DesiredState

log = logging.getLogger(__name__)


async def teardown_dataplane(dataplane: Dataplane) -> int:
    """Remove our links, peers, routes, FDB and neighbour entries. Returns how many changes it made.
    Only objects we own are observed (our link names, our route protocol), so nothing else is touched."""
    actual = await dataplane.observe()
    actions = diff(DesiredState(), actual)
    await dataplane.apply(actions)
    return len(actions)


async def remove_annotations(datastore: Datastore, node_name: str) -> None:
    """Remove every `meshd.io/*` annotation of our node record."""
    await datastore.publish(node_name, dict.fromkeys(ANNOTATIONS))
