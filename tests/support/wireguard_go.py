"""Build (or find in the cache) the newest wireguard-go from its Go module, `golang.zx2c4.com/wireguard`,
pinned by version. It lives outside the repository under $MESHD_TEST_CACHE (default /var/cache/meshd-test):
`go/` holds the module and build caches shared with the other Go-built tools, `wireguard-go-VERSION/` the
binary, named `wireguard-go` like Debian's (meshd recognises the process by that name).

    python -m tests.support.wireguard_go build [--force]   prints the binary's path
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.realapi.build import CACHE, BuildError, go_binary, go_env

MODULE = "golang.zx2c4.com/wireguard"
VERSION = os.environ.get("MESHD_WIREGUARD_GO_VERSION", "v0.0.0-20260522210424-ecfc5a8d5446")


def binary() -> Path:
    return CACHE / f"wireguard-go-{VERSION}" / "wireguard-go"


def build(*, force: bool = False) -> Path:
    """The binary's path, built first when missing (one build at a time on this machine)."""
    out = binary()
    if out.is_file() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with (out.parent / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file() and not force:
            return out
        gobin, log = out.parent / "bin.tmp", out.parent / "build.log"
        shutil.rmtree(gobin, ignore_errors=True)
        with log.open("wb") as err:
            res = subprocess.run(
                [go_binary(), "install", "-trimpath", "-ldflags=-s -w", f"{MODULE}@{VERSION}"],
                check=False, env=go_env() | {"GOBIN": str(gobin)}, cwd=out.parent, stderr=err,
            )  # fmt: skip
        if res.returncode != 0:
            raise BuildError(f"go install {MODULE}@{VERSION} failed ({res.returncode}), see {log}")
        (gobin / "wireguard").rename(out)
        shutil.rmtree(gobin, ignore_errors=True)
    return out


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "build" or argv[1:] not in ([], ["--force"]):
        print("usage: python -m tests.support.wireguard_go build [--force]", file=sys.stderr)
        return 2
    print(build(force=argv[1:] == ["--force"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
