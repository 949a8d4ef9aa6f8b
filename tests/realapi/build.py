"""Build (or find in the cache) `kube-apiserver` and `etcd` from their upstream Go modules.

`k8s.io/kubernetes` cannot be built from its own module (its staging modules are separate modules), so a
scratch module requires it and replaces every `k8s.io/<staging>` module with `v0.<minor>.<patch>` of the
same release. etcd is the `go.etcd.io/etcd/server/v3` main package at the version Kubernetes itself
requires, built in the same `go build` (one dependency graph, one compile cache).

Everything lives outside the repository under $MESHD_TEST_CACHE (default /var/cache/meshd-test):
`go/` (module and build caches, reused by every later build) and `k8s-vX.Y.Z/bin/` (the binaries: the key).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

K8S_VERSION = os.environ.get("MESHD_K8S_VERSION", "v1.37.2")
CACHE = Path(os.environ.get("MESHD_TEST_CACHE", "/var/cache/meshd-test"))
KUBE_MODULE = "k8s.io/kubernetes"
ETCD_MAIN = "go.etcd.io/etcd/server/v3"
BINARIES = ("kube-apiserver", "etcd")
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


class BuildError(RuntimeError):
    pass


def bin_dir(version: str = K8S_VERSION) -> Path:
    return CACHE / f"k8s-{version}" / "bin"


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


def _go(args: list[str], cwd: Path, log: Path) -> str:
    with log.open("ab") as err:
        res = subprocess.run(
            [go_binary(), *args], check=False, cwd=cwd, env=go_env(), stdout=subprocess.PIPE, stderr=err
        )
    if res.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise BuildError(f"go {args[0]} failed ({res.returncode}), see {log}: {tail[0]}")
    return res.stdout.decode()


def staging_modules(version: str, work: Path, log: Path) -> list[str]:
    """The `k8s.io/*` modules that k8s.io/kubernetes replaces with its ./staging directories."""
    info = json.loads(_go(["mod", "download", "-json", f"{KUBE_MODULE}@{version}"], work, log))
    mods = []
    for line in Path(info["GoMod"]).read_text().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            mods.append(parts[0])
    if not mods:
        raise BuildError(f"{KUBE_MODULE}@{version}: no staging replacements found in its go.mod")
    return mods


def ldflags(version: str) -> str:
    """Strip symbols, and stamp the release into the binary: a module build otherwise reports
    `v0.0.0-master+$Format:%H$`, which kubectl cannot even parse."""
    major, minor = version.removeprefix("v").split(".")[:2]
    stamps = {"gitVersion": version, "gitMajor": major, "gitMinor": minor, "gitTreeState": "clean"}
    flags = [f"-X {pkg}.{k}={v}" for pkg in VERSION_PACKAGES for k, v in stamps.items()]
    return " ".join(["-s", "-w", *flags])


def scratch_gomod(version: str, staging: list[str]) -> str:
    minor_patch = version.removeprefix("v1.")
    lines = [
        "module meshd.test/apiserver",
        "",
        "go 1.26",
        "",
        f"require {KUBE_MODULE} {version}",
        "",
        "replace (",
    ]
    lines += [f"\t{m} => {m} v0.{minor_patch}" for m in staging]
    return "\n".join([*lines, ")", ""])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build per version at a time on this machine (other test runs may build concurrently)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build(version: str = K8S_VERSION, *, force: bool = False) -> Path:
    """The directory holding kube-apiserver and etcd for `version`, built first when missing."""
    out = bin_dir(version)
    if not force and all((out / b).is_file() for b in BINARIES):
        return out
    top = out.parent
    with _locked(top / "build.lock"):
        if not force and all((out / b).is_file() for b in BINARIES):
            return out  # another process built it while we waited
        work, log = top / "src", top / "build.log"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        log.write_text("")
        staging = staging_modules(version, work, log)
        (work / "go.mod").write_text(scratch_gomod(version, staging))
        tmp = top / "bin.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        t0 = time.monotonic()
        print(f"building kube-apiserver {version} and etcd (first time: minutes) ...", file=sys.stderr)
        _go(["build", "-trimpath", f"-ldflags={ldflags(version)}", "-o", str(tmp) + "/", f"{KUBE_MODULE}/cmd/kube-apiserver",
             ETCD_MAIN], work, log)  # fmt: skip
        (tmp / "server").rename(tmp / "etcd")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        print(f"built in {time.monotonic() - t0:.0f}s into {out}", file=sys.stderr)
    return out


if __name__ == "__main__":
    force = "--force" in sys.argv[1:]
    try:
        print(build(force=force))
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        sys.exit(1)
