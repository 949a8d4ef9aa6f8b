"""Build (or find in the cache) `kube-apiserver` and `etcd` from their upstream Go modules.

`k8s.io/kubernetes` cannot be built from its own module (its staging modules are separate modules), so a
scratch module requires it and replaces every `k8s.io/<staging>` module with `v0.<minor>.<patch>` of the
same release. etcd is the `go.etcd.io/etcd/server/v3` main package at the version Kubernetes itself
requires, built in the same `go build` (one dependency graph, one compile cache).

Everything lives outside the repository under $MESHD_TEST_CACHE (default /var/cache/meshd-test):
`go/` (module and build caches, reused by every later build) and `k8s-vX.Y.Z/bin/` (the binaries: the key).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from tests.support.gobuild import CACHE, BuildError, build_once, fresh_dir, go, put_in_place

K8S_VERSION = os.environ.get("MESHD_K8S_VERSION", "v1.37.2")
KUBE_MODULE = "k8s.io/kubernetes"
ETCD_MAIN = "go.etcd.io/etcd/server/v3"
BINARIES = ("kube-apiserver", "etcd")
VERSION_PACKAGES = ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")


def bin_dir(version: str = K8S_VERSION) -> Path:
    return CACHE / f"k8s-{version}" / "bin"


def staging_modules(version: str, work: Path, log: Path) -> list[str]:
    """The `k8s.io/*` modules that k8s.io/kubernetes replaces with its ./staging directories."""
    info = json.loads(go(["mod", "download", "-json", f"{KUBE_MODULE}@{version}"], work, log))
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


def build(version: str = K8S_VERSION, *, force: bool = False) -> Path:
    """The directory holding kube-apiserver and etcd for `version`, built first when missing."""
    out = bin_dir(version)
    top = out.parent

    def compile_into_place() -> None:
        work, log, tmp = fresh_dir(top / "src"), top / "build.log", fresh_dir(top / "bin.tmp")
        staging = staging_modules(version, work, log)
        (work / "go.mod").write_text(scratch_gomod(version, staging))
        t0 = time.monotonic()
        print(f"building kube-apiserver {version} and etcd (first time: minutes) ...", file=sys.stderr)
        go(["build", "-trimpath", f"-ldflags={ldflags(version)}", "-o", f"{tmp}/", f"{KUBE_MODULE}/cmd/kube-apiserver",
            ETCD_MAIN], work, log)  # fmt: skip
        (tmp / "server").rename(tmp / "etcd")
        put_in_place(tmp, out, t0)

    build_once(top, lambda: all((out / b).is_file() for b in BINARIES), compile_into_place, force=force)
    return out


if __name__ == "__main__":
    force = "--force" in sys.argv[1:]
    try:
        print(build(force=force))
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        sys.exit(1)
