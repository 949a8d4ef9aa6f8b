"""`python -m tests.fakekube --port P [--kubeconfig-out FILE]`: run the fake API server until SIGTERM/SIGINT.
Drive it through the real API and the `/_control/` endpoints."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.fakekube.server import FakeKube


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakekube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--kubeconfig-out", type=Path, help="write a kubeconfig pointing at the server")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds between BOOKMARKs")
    args = parser.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with FakeKube(host=args.host, port=args.port, bookmark_interval=args.bookmark_interval) as kube:
        if args.kubeconfig_out is not None:
            kube.write_kubeconfig(args.kubeconfig_out)
        print(kube.url, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
