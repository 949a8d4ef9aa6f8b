"""The Go build plumbing the Go-built test tools share: the toolchain, its caches, one build at a time.

Everything lives outside the repository under $MESHD_TEST_CACHE (default /var/cache/meshd-test): `go/`
holds the module and build caches every tool reuses; each tool keeps its binaries in its own directory
(`top`), keyed by the versions it builds, beside that directory's `build.lock` and `build.log`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

CACHE = Path(os.environ.get("MESHD_TEST_CACHE", "/var/cache/meshd-test"))


class BuildError(RuntimeError):
    pass


def go_binary() -> str:
    found = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(found).exists():
        raise BuildError("no Go toolchain (looked for `go` on PATH and /usr/local/go/bin/go)")
    return found


def go_env() -> dict[str, str]:
    """Caches outside the repository; static binaries; never switch toolchains; resolve modules as needed."""
    root = CACHE / "go"
    return os.environ | {
        "GOPATH": str(root),
        "GOCACHE": str(root / "cache"),
        "GOMODCACHE": str(root / "mod"),
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "CGO_ENABLED": "0",
    }


def go(args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None) -> str:
    """Run `go ARGS` in `cwd`, its stderr appended to `log`; its stdout, or BuildError with the log's tail."""
    with log.open("ab") as err:
        err.write(f"$ go {' '.join(args)}\n".encode())
        err.flush()
        res = subprocess.run(
            [go_binary(), *args],
            check=False,
            cwd=cwd,
            env=env or go_env(),
            stdout=subprocess.PIPE,
            stderr=err,
        )
    if res.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BuildError(f"go {args[0]} failed ({res.returncode}), see {log}: {tail[0]}")
    return res.stdout.decode()


def build_once(top: Path, complete: Callable[[], bool], build: Callable[[], None], *, force: bool) -> None:
    """Run `build` unless `complete()` already holds, one build per `top` at a time on this machine (other
    test runs may build concurrently): the check is repeated under the lock, for the process that waited."""
    if not force and complete():
        return
    top.mkdir(parents=True, exist_ok=True)
    with (top / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and complete():
            return
        (top / "build.log").write_text("")
        build()


def fresh_dir(path: Path) -> Path:
    """An empty directory at `path` (what a failed build left there is removed)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def put_in_place(built: Path, out: Path, t0: float) -> Path:
    """Replace `out` with the finished build directory `built` (started at monotonic `t0`), and say so."""
    shutil.rmtree(out, ignore_errors=True)
    built.rename(out)
    print(f"built in {time.monotonic() - t0:.0f}s into {out}", file=sys.stderr)
    return out
