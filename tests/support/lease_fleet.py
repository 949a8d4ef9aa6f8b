"""MeshConfig-status reporters over the real Lease, for tests/test_lease_realapi_netns.py, run inside the
API server's namespace: `python -m tests.support.lease_fleet KUBECONFIG NAMESPACE LOOK NAME...`, one
reporter per NAME, each with its own status store and connection, all ranking the same NAMEs; the
non-candidates look at the Lease every LOOK seconds on average. A line `stop NAME...` on stdin stops those
reporters as a SIGKILL would (no release) and answers `stopped`; end of input ends them all."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from meshd.agent.candidates import Candidacy
from meshd.agent.events import EventRecorder
from meshd.agent.meshconfig_report import MeshConfigReporter
from meshd.agent.view import MeshView
from meshd.core.local import Identity
from meshd.datastore.k8s_api import MESHCONFIG_NAME, MESHCONFIGS, PATHS, KubeApi
from meshd.datastore.k8s_status import KubeStatusStore


async def follow_generation(kubeconfig: Path, into: list[int | None]) -> None:
    """The MeshConfig's generation, read each second (an agent has it from its watch)."""
    api = await KubeApi.connect(kubeconfig)
    try:
        while True:
            obj = await api.call("GET", f"{PATHS[MESHCONFIGS]}/{MESHCONFIG_NAME}")
            into[0] = int(obj["metadata"]["generation"])
            await asyncio.sleep(1)
    finally:
        await api.close()


async def main(kubeconfig: Path, namespace: str, look: float, names: list[str]) -> None:
    generation: list[int | None] = [None]
    follower = asyncio.create_task(follow_generation(kubeconfig, generation))
    order = sorted(names)
    stores = {n: KubeStatusStore(kubeconfig=kubeconfig, namespace=namespace) for n in names}
    tasks = {
        n: asyncio.create_task(
            MeshConfigReporter(
                store,
                MeshView(Identity(name=n, public_key=None)),
                EventRecorder(store),
                lambda: None,
                lambda: generation[0],
                contends=Candidacy(n, lambda: (1, order)),
                look_every=look,
            ).run()
        )
        for n, store in stores.items()
    }
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        for name in line.split()[1:]:
            tasks.pop(name).cancel()  # its store stays open until the end: closing gives the Lease up
        print("stopped", flush=True)
    for task in [*tasks.values(), follower]:
        task.cancel()
    await asyncio.gather(*tasks.values(), follower, return_exceptions=True)
    for store in stores.values():
        await store.close()


if __name__ == "__main__":
    config, ns, every, *fleet = sys.argv[1:]
    asyncio.run(main(Path(config), ns, float(every), fleet))
