"""Build (or find in the cache) `helm` and `promtool` from their upstream Go modules, in one `go build`.

A scratch module requires `helm.sh/helm/v3` and `github.com/prometheus/prometheus`; both main packages are
built together (one dependency graph, one compile cache). Everything lives outside the repository under
$MESHD_TEST_CACHE (default /var/cache/meshd-test): `go/` holds the module and build caches shared with the
other Go-built test tools, `gotools-helm-vX-promtool-vY/bin/` holds the binaries (the versions are the key).
promtool is built without Prometheus's service-discovery plugins (build tag `remove_all_sd`).

    python -m tests.support.gotools build [--force]   prints the bin directory
    python -m tests.support.gotools path helm         prints one binary's path (building it first if needed)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tests.support.gobuild import CACHE, BuildError, build_once, fresh_dir, go, put_in_place

HELM_VERSION = os.environ.get("MESHD_HELM_VERSION", "v3.22.0")
PROMETHEUS_VERSION = os.environ.get("MESHD_PROMETHEUS_VERSION", "v0.316.0")
HELM_MODULE = "helm.sh/helm/v3"
PROMETHEUS_MODULE = "github.com/prometheus/prometheus"
MAINS = {"helm": f"{HELM_MODULE}/cmd/helm", "promtool": f"{PROMETHEUS_MODULE}/cmd/promtool"}
# Prometheus's own build tag: leave out every service-discovery plugin (AWS, Azure, GCE, ... SDKs, most of
# the compile time). `promtool check/test rules` need none; `promtool check config` would reject SD configs.
TAGS = "remove_all_sd"


def bin_dir() -> Path:
    return CACHE / f"gotools-helm-{HELM_VERSION}-promtool-{PROMETHEUS_VERSION}" / "bin"


def ldflags(work: Path, log: Path) -> str:
    """What the upstream Makefiles stamp in: the versions, and the Kubernetes version helm assumes when it
    renders offline (`.Capabilities.KubeVersion`; else v1.20, below the chart's kubeVersion), from the
    k8s.io/client-go this build links, as helm's Makefile derives it."""
    client_go = go(["list", "-m", "-f", "{{.Version}}", "k8s.io/client-go"], work, log).strip()
    major, minor = client_go.removeprefix("v").split(".")[:2]
    stamps = {
        "helm.sh/helm/v3/internal/version.version": HELM_VERSION,
        "github.com/prometheus/common/version.Version": PROMETHEUS_VERSION,
    }
    for pkg in ("helm.sh/helm/v3/pkg/lint/rules", "helm.sh/helm/v3/pkg/chartutil"):
        stamps |= {f"{pkg}.k8sVersionMajor": str(int(major) + 1), f"{pkg}.k8sVersionMinor": minor}
    return " ".join(["-s", "-w", *(f"-X {k}={v}" for k, v in stamps.items())])


def scratch_gomod() -> str:
    return "\n".join(
        [
            "module meshd.test/gotools",
            "",
            "go 1.26",
            "",
            f"require {HELM_MODULE} {HELM_VERSION}",
            f"require {PROMETHEUS_MODULE} {PROMETHEUS_VERSION}",
            "",
        ]
    )


def _complete(out: Path) -> bool:
    return all((out / name).is_file() for name in MAINS)


def build(*, force: bool = False) -> Path:
    """The directory holding helm and promtool, built first when missing."""
    out = bin_dir()
    top = out.parent

    def compile_into_place() -> None:
        work, log, tmp = fresh_dir(top / "src"), top / "build.log", fresh_dir(top / "bin.tmp")
        (work / "go.mod").write_text(scratch_gomod())
        t0 = time.monotonic()
        print(f"building helm {HELM_VERSION} and promtool {PROMETHEUS_VERSION} (first time: minutes) ...",
              file=sys.stderr)  # fmt: skip
        go(["mod", "download", HELM_MODULE, PROMETHEUS_MODULE], work, log)
        flags = ldflags(work, log)
        go(
            ["build", "-trimpath", f"-tags={TAGS}", f"-ldflags={flags}", "-o", f"{tmp}/", *MAINS.values()],
            work,
            log,
        )
        put_in_place(tmp, out, t0)

    build_once(top, lambda: _complete(out), compile_into_place, force=force)
    return out


def tool(name: str) -> Path:
    return build() / name


def main(argv: list[str]) -> int:
    try:
        if argv[:1] == ["build"]:
            print(build(force="--force" in argv[1:]))
        elif argv[:1] == ["path"] and len(argv) == 2 and argv[1] in MAINS:
            print(tool(argv[1]))
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except BuildError as exc:
        print(f"build failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
