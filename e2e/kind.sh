#!/usr/bin/env bash
# End-to-end test of meshd on a throwaway kind cluster: 3 nodes, no default CNI, meshd as the only
# pod network. Measures pod-to-pod iperf3 throughput across nodes with MeshConfig encryption Enabled,
# Disabled, and Enabled again, and checks on the underlay (tcpdump in the server node's network
# namespace) that while Enabled the traffic is WireGuard only: UDP to the WireGuard port, no VXLAN
# (UDP 4789) and no plaintext TCP to the server pod.
#
# Needs: docker (with a running engine), kind, kubectl, python3. It CANNOT run on the meshd development
# machines (no Docker engine there); run it on a workstation or a CI runner with Docker.
#
# Usage: e2e/kind.sh            env: MESHD_E2E_CLUSTER (default meshd-e2e), MESHD_E2E_DURATION (s, 10),
#                                    MESHD_E2E_KEEP=1 keeps the cluster for debugging.
# Exit: 0 all checks passed, 1 a check failed, 2 missing tools or the cluster name is already taken.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
CLUSTER=${MESHD_E2E_CLUSTER:-meshd-e2e}
DURATION=${MESHD_E2E_DURATION:-10}
KEEP=${MESHD_E2E_KEEP:-0}
IMAGE=meshd:e2e
TOOLS=meshd-e2e-tools:e2e
CONTEXT=kind-$CLUSTER
CREATED=0
FAILED=0
RESULTS=()

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'e2e: %s\n' "$*" >&2; exit "${2:-1}"; }
k() { kubectl --context "$CONTEXT" "$@"; }

cleanup() {
  if [[ $CREATED == 1 && $KEEP != 1 ]]; then
    log "deleting kind cluster $CLUSTER"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  elif [[ $CREATED == 1 ]]; then
    log "keeping kind cluster $CLUSTER (kubectl --context $CONTEXT ...)"
  fi
}
trap cleanup EXIT

preflight() {
  local tool
  for tool in docker kind kubectl python3; do
    command -v "$tool" >/dev/null || die "$tool is not installed" 2
  done
  docker info >/dev/null 2>&1 || die "no Docker engine reachable (docker info failed)" 2
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    die "a kind cluster named $CLUSTER already exists; delete it or set MESHD_E2E_CLUSTER" 2
  fi
}

build_images() {
  log "building $IMAGE and $TOOLS"
  docker build --quiet --tag "$IMAGE" . >/dev/null
  docker build --quiet --tag "$TOOLS" - >/dev/null <<'EOF'
FROM debian:12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends iperf3 tcpdump \
    && rm -rf /var/lib/apt/lists/*
EOF
}

create_cluster() {
  log "creating kind cluster $CLUSTER (no default CNI)"
  CREATED=1
  kind create cluster --name "$CLUSTER" --config e2e/kind-config.yaml
  kind load docker-image --name "$CLUSTER" "$IMAGE" "$TOOLS"
}

install_meshd() {
  log "installing meshd"
  k apply -f manifests/crd-meshconfig.yaml
  k wait --for condition=established --timeout=60s crd/meshconfigs.meshd.io
  k apply -k e2e/
  k -n kube-system rollout status daemonset/meshd --timeout=300s
  k wait --for condition=Ready nodes --all --timeout=300s
}

start_iperf3() {
  log "starting iperf3 server and client pods"
  k apply -f e2e/iperf3.yaml
  k wait --for condition=Ready pod/iperf3-server pod/iperf3-client --timeout=180s
  SERVER_IP=$(k get pod iperf3-server -o jsonpath='{.status.podIP}')
  SERVER_NODE=$(k get pod iperf3-server -o jsonpath='{.spec.nodeName}')
  CLIENT_NODE=$(k get pod iperf3-client -o jsonpath='{.spec.nodeName}')
  [[ $SERVER_NODE != "$CLIENT_NODE" ]] || die "server and client landed on one node ($SERVER_NODE)"
  log "server $SERVER_IP on $SERVER_NODE, client on $CLIENT_NODE"
}

set_mode() {
  local mode=$1 generation deadline observed
  log "MeshConfig encryption.mode=$mode"
  k patch meshconfig default --type merge -p "{\"spec\":{\"encryption\":{\"mode\":\"$mode\"}}}"
  generation=$(k get meshconfig default -o jsonpath='{.metadata.generation}')
  deadline=$((SECONDS + 120))
  # Every agent reports the generation it has fully applied on its node (a missing one counts as behind).
  until observed=$(k get nodes -o jsonpath='{range .items[*]}{.metadata.annotations.meshd\.io/observed-generation}{"\n"}{end}') \
    && [[ $(grep -cvx -- "$generation" <<<"$observed" || true) == 0 ]]; do
    ((SECONDS < deadline)) || die "nodes did not apply MeshConfig generation $generation within 120 s"
    sleep 2
  done
}

wg_port() {
  local port
  port=$(k get meshconfig default -o jsonpath='{.spec.wireguard.listenPort}')
  echo "${port:-51820}"
}

# count PCAP FILTER: packets in the capture file matching a tcpdump filter.
count() {
  docker run --rm -i --network none "$TOOLS" tcpdump -nn -r - "$2" 2>/dev/null <"$1" | wc -l
}

# measure PHASE MODE: iperf3 throughput while capturing the server node's underlay.
measure() {
  local phase=$1 mode=$2 pcap mbits wg vxlan plain verdict=ok port
  port=$(wg_port)
  pcap=$(mktemp)
  docker run --rm --network "container:$SERVER_NODE" "$TOOLS" \
    timeout "$((DURATION + 4))" tcpdump -i eth0 -nn -s 128 -U -w - \
    "udp port $port or udp port 4789 or (tcp and host $SERVER_IP)" >"$pcap" 2>/dev/null &
  local capture=$!
  sleep 2
  mbits=$(k exec iperf3-client -- iperf3 --client "$SERVER_IP" --time "$DURATION" --json \
    | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e6))')
  wait "$capture" || true
  wg=$(count "$pcap" "udp port $port")
  vxlan=$(count "$pcap" "udp port 4789")
  plain=$(count "$pcap" "tcp and host $SERVER_IP")
  rm -f "$pcap"
  # Keepalives and handshakes alone are a few packets: the iperf3 stream itself must be in WireGuard.
  if [[ $mode == Enabled ]] && ((wg < 1000 || vxlan > 0 || plain > 0)); then
    verdict=FAIL
    FAILED=1
  elif [[ $mode == Disabled ]] && ((vxlan == 0)); then
    verdict=FAIL
    FAILED=1
  fi
  RESULTS+=("$(printf '%-10s %-9s %10s %12s %12s %12s  %s' "$phase" "$mode" "$mbits" "$wg" "$vxlan" "$plain" "$verdict")")
}

report() {
  printf '\n%-10s %-9s %10s %12s %12s %12s  %s\n' phase mode Mbit/s "wg-udp-pkts" "vxlan-pkts" "plain-tcp" verdict
  printf '%s\n' "${RESULTS[@]}"
  printf '\nEnabled: WireGuard packets seen, no VXLAN, no plaintext TCP to the server pod on the underlay.\n'
  printf 'Disabled: VXLAN packets seen. Throughput numbers are only comparable within this run.\n'
}

main() {
  preflight
  build_images
  create_cluster
  install_meshd
  start_iperf3
  set_mode Enabled
  measure 1-enabled Enabled
  set_mode Disabled
  measure 2-disabled Disabled
  set_mode Enabled
  measure 3-enabled Enabled
  report
  ((FAILED == 0)) || die "some checks failed (see the table)"
  log "all checks passed"
}

main "$@"
