"""Importing a package's submodules without running the package's own `__init__`.

`kubernetes/__init__.py` imports the whole synchronous client (requests, urllib3, oauthlib, websocket,
its generated API and watch modules) and `kubernetes/aio/__init__.py` the asyncio client's dynamic,
stream, watch and leader-election parts; the agent uses none of them (k8s_api.py makes its requests
through `kubernetes.aio.client.ApiClient` and loads its configuration with `kubernetes.aio.config`). Both
packages are registered bare: their submodules import as usual, only those two `__init__`s do not run.
About 12 MB less for the agent. `meshd run` registers `pyroute2` bare too (cli/run.py): its `__init__`
imports every pyroute2 module, where the agent imports the few it uses by their own names. A package
someone already imported is left as it is."""

from __future__ import annotations

import importlib.util
import sys


def bare_packages(*names: str) -> None:
    """Register each package in `names` (parents first) without executing its `__init__`."""
    for name in names:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise ImportError(f"{name} is not an installed package", name=name)
        sys.modules[name] = importlib.util.module_from_spec(spec)  # its code is not run
