"""Scale: one real agent (Kubernetes datastore, wireguard-go) against the fake API server holding 1000
nodes, 999 of them simulated (records only, no namespaces). Every figure is set against a baseline
measured in the same run:

- initial sync to 999 programmed peers and routes   vs  `wg setconf` of the same 999 peers (the floor)
- one node added: API write to its route installed vs  the same event reaching a bare watch client
- agent RSS                                          vs  an idle interpreter that imported the same modules
- one no-op resync pass                              vs  one `wg show IFACE dump` (reading the device once)

The bench process re-executes itself inside a namespace it created, so the fake API server, the agent
and wireguard-go share a loopback there; the root namespace is never touched.
Run as root: .venv/bin/python -m bench.scale [--nodes 1000] [--adds 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from meshd.demo.netlab import Lab


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=1000, help="cluster size, our node included (max 1000)")
    ap.add_argument("--adds", type=int, default=5, help="single-node additions to time")
    args = ap.parse_args(argv)
    if not 2 <= args.nodes <= 1000 or not 1 <= args.adds <= 20:
        ap.error("--nodes must be 2..1000 and --adds 1..20")
    with tempfile.TemporaryDirectory(prefix="meshd-bench-") as tmp, Lab() as lab:
        ns = lab.ns("scale")
        lab.veth(ns, "eth0", ns, "peer0")  # the underlay link: both ends stay in our namespace
        lab.ip(ns, "addr", "add", "198.18.0.1/16", "dev", "eth0")
        inner = lab.popen(
            ns,
            sys.executable, "-m", "bench.scale_run",
            "--nodes", str(args.nodes), "--adds", str(args.adds),
            "--workdir", tmp, "--interface", lab.ifname("sa"), "--baseline-interface", lab.ifname("sb"),
        )  # fmt: skip
        try:
            return inner.wait(timeout=900)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            print("the scale run did not finish", file=sys.stderr)
            return 1
        finally:
            if (Path(tmp) / "agent.log").exists() and inner.returncode not in (0, None):
                print((Path(tmp) / "agent.log").read_text()[-3000:], file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
