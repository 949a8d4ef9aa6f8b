"""scripts/apiserver: a real kube-apiserver (+ etcd) for tests and people.

  up DIR [--netns NS --address IP]   build or reuse the binaries, start both, wait for /readyz, print KEY=VALUE
  down DIR                           stop what `up DIR` started (by PID) and remove what it created
  build [--force]                    only build (or find in the cache) the binaries; print their directory

Exit 0 on success; otherwise one line on stderr saying why, and non-zero.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from tests.realapi import build, server
from tests.support.gobuild import BuildError


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _up(args: argparse.Namespace) -> int:
    if (args.netns is None) != (args.address is None) and args.netns is not None:
        raise server.UpError("--netns needs --address (the IP the API server listens on inside it)")
    state = server.up(Path(args.dir), args.netns, args.address)
    root = Path(state.dir)
    values = {
        "KUBECONFIG": root / "admin.kubeconfig",
        "SERVER": f"https://{state.address}:{server.PORT}",
        "NETNS": state.netns,
        "ADDRESS": state.address,
        "CA": root / "pki" / "ca.crt",
        "ETCD": server.ETCD_URL,
        "KUBE_VERSION": build.K8S_VERSION,
        "APISERVER_PID": state.pids["kube-apiserver"][0],
        "ETCD_PID": state.pids["etcd"][0],
        "LOGS": root / "logs",
    }
    for key, value in values.items():
        print(f"{key}={value}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/apiserver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_up = sub.add_parser("up", help="start etcd and kube-apiserver")
    p_up.add_argument("dir")
    p_up.add_argument("--netns", help="an existing network namespace (default: create one)")
    p_up.add_argument("--address", help=f"listen on ADDRESS:6443 (default {server.DEFAULT_ADDRESS})")
    p_down = sub.add_parser("down", help="stop and remove what `up DIR` started and created")
    p_down.add_argument("dir")
    p_build = sub.add_parser("build", help="build (or reuse) the binaries")
    p_build.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGHUP, _interrupted)
    try:
        if args.cmd == "up":
            return _up(args)
        if args.cmd == "down":
            server.down(Path(args.dir))
            return 0
        print(build.build(force=args.force))
        return 0
    except KeyboardInterrupt as exc:
        print(f"apiserver {args.cmd}: interrupted ({exc or 'SIGINT'}); cleaned up", file=sys.stderr)
        return 130
    except (server.UpError, BuildError, OSError, ValueError) as exc:
        print(f"apiserver {args.cmd}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
