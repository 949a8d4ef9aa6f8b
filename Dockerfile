# meshd agent image. Build from the repository root:  docker build -t ghcr.io/meshd/meshd:0.1.0 .
# Runs as root: the agent needs CAP_NET_ADMIN in the host network namespace (the DaemonSet drops every
# other capability). Contents:
#   wireguard-go                      userspace WireGuard where the kernel has no module, built from its Go
#                                     module (golang.zx2c4.com/wireguard, pinned below): with TUN offloads it
#                                     measured 2.5x the throughput of Debian 12's 2022 build (bench/RESULTS.md)
#   wireguard-tools                   `wg` for debugging
#   iproute2                          `ip` for debugging on the node
#   containernetworking-plugins       bridge/host-local/portmap/loopback (/usr/lib/cni), copied onto nodes
#                                     that lack them by the DaemonSet's init container
#   python3 + a venv with meshd       the agent itself (console script `meshd`)
FROM golang:1.26-bookworm AS wireguard-go
# The same version bench/throughput measures (tests/support/wireguard_go.py).
ARG WIREGUARD_GO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446
RUN CGO_ENABLED=0 GOBIN=/out go install -trimpath -ldflags="-s -w" \
        golang.zx2c4.com/wireguard@${WIREGUARD_GO_VERSION} \
    && mv /out/wireguard /out/wireguard-go

FROM debian:12-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        wireguard-tools iproute2 containernetworking-plugins python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
# named like Debian's: meshd recognises its wireguard-go processes by that name
COPY --from=wireguard-go /out/wireguard-go /usr/bin/wireguard-go

# .dockerignore admits only the package sources and pyproject.toml.
COPY . /src
RUN python3 -m venv /opt/meshd \
    && /opt/meshd/bin/pip install --no-cache-dir /src \
    && rm -rf /src

ENV PATH=/opt/meshd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

ENTRYPOINT ["meshd"]
CMD ["run"]
