# meshd agent image. Build from the repository root:  docker build -t ghcr.io/meshd/meshd:0.1.0 .
# Runs as root: the agent needs CAP_NET_ADMIN in the host network namespace (the DaemonSet drops every
# other capability). Contents:
#   wireguard-go, wireguard-tools     userspace WireGuard where the kernel has no module; `wg` for debugging
#   iproute2                          `ip` for debugging on the node
#   containernetworking-plugins       bridge/host-local/portmap/loopback (/usr/lib/cni), copied onto nodes
#                                     that lack them by the DaemonSet's init container
#   python3 + a venv with meshd       the agent itself (console script `meshd`)
FROM debian:12-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        wireguard-go wireguard-tools iproute2 containernetworking-plugins python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

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
