"""Build (or find in the cache) the newest wireguard-go from its Go module, `golang.zx2c4.com/wireguard`,
pinned by version. It lives outside the repository under $MESHD_TEST_CACHE (default /var/cache/meshd-test):
`go/` holds the module and build caches shared with the other Go-built tools, `wireguard-go-VERSION/` the
binary, named `wireguard-go` like Debian's (meshd recognises the process by that name).

    python -m tests.support.wireguard_go build [--force]   prints the binary's path
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from tests.support.gobuild import CACHE, build_once, fresh_dir, go, go_env

MODULE = "golang.zx2c4.com/wireguard"
VERSION = os.environ.get("MESHD_WIREGUARD_GO_VERSION", "v0.0.0-20260522210424-ecfc5a8d5446")


def binary() -> Path:
    return CACHE / f"wireguard-go-{VERSION}" / "wireguard-go"


def build(*, force: bool = False) -> Path:
    """The binary's path, built first when missing (one build at a time on this machine)."""
    out = binary()
    top = out.parent

    def install() -> None:
        gobin = fresh_dir(top / "bin.tmp")
        env = go_env() | {"GOBIN": str(gobin)}
        go(["install", "-trimpath", "-ldflags=-s -w", f"{MODULE}@{VERSION}"], top, top / "build.log", env)
        (gobin / "wireguard").rename(out)
        shutil.rmtree(gobin, ignore_errors=True)

    build_once(top, out.is_file, install, force=force)
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "build" or argv[1:] not in ([], ["--force"]):
        print("usage: python -m tests.support.wireguard_go build [--force]", file=sys.stderr)
        return 2
    print(build(force=argv[1:] == ["--force"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
