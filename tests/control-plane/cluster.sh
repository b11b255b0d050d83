#!/usr/bin/env bash
# Starts and stops a real Kubernetes control plane for tests, without Docker:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and kwok with
# two fake GPU nodes (8 x nvidia.com/gpu each), all on 127.0.0.1.
#
#   dir=$(tests/control-plane/cluster.sh up)     # prints the cluster's directory
#   . "$dir/env"                                 # KUBECONFIG, PATH (kubectl, helm)
#   tests/control-plane/cluster.sh down "$dir"   # stops exactly what `up` started
#
# `up` records the PID of every process it starts in $dir/pids; `down` stops
# those PIDs (TERM, then KILL) and nothing else. Logs are in $dir/logs.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "cluster.sh: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start NAME CMD...: runs CMD in its own session, logging to $dir/logs/NAME.log.
start() {
  local name=$1
  shift
  setsid "$@" >"$dir/logs/$name.log" 2>&1 </dev/null &
  echo "$! $name" >>"$dir/pids"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds or time runs out.
wait_for() {
  local what=$1 secs=$2
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      log "$what not ready after ${secs}s; last log lines:"
      tail -n 30 "$dir"/logs/*.log >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

pki() {
  local d=$dir/pki
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 7 \
      -subj /CN=tau2-test-ca -keyout ca.key -out ca.crt 2>/dev/null
    leaf() { # name subject extensions
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" \
        -keyout "$1.key" -out "$1.csr" 2>/dev/null
      printf '%b' "$3" >"$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 7 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    }
    leaf apiserver /CN=kube-apiserver \
      'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n'
    leaf admin '/O=system:masters/CN=admin' 'extendedKeyUsage=clientAuth\n'
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  )
}

kubeconfig() {
  local d=$dir/pki b64="base64 -w0"
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: tau2-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority-data: $($b64 <"$d/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $($b64 <"$d/admin.crt")
    client-key-data: $($b64 <"$d/admin.key")
contexts:
- name: tau2-test
  context: {cluster: tau2-test, user: admin}
current-context: tau2-test
EOF
}

up() {
  local bin
  bin=$("$here/build.sh")
  dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/tau2-cluster.XXXXXX")}
  mkdir -p "$dir/logs"
  : >"$dir/pids"
  # If anything below fails, stop what was already started.
  trap 'down "$dir" >/dev/null 2>&1 || true' ERR

  local etcd_port peer_port
  etcd_port=$(free_port)
  peer_port=$(free_port)
  api_port=$(free_port)
  pki
  local d=$dir/pki

  start etcd "$bin/etcd" --name tau2-test --data-dir "$dir/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "tau2-test=http://127.0.0.1:$peer_port" --listen-metrics-urls "" --log-level warn
  wait_for etcd 30 curl -sf "http://127.0.0.1:$etcd_port/health"

  start kube-apiserver "$bin/kube-apiserver" --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --endpoint-reconciler-type none --cert-dir "$d" \
    --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" --client-ca-file "$d/ca.crt" \
    --service-account-issuer "https://127.0.0.1:$api_port" --service-account-key-file "$d/sa.pub" \
    --service-account-signing-key-file "$d/sa.key" --service-cluster-ip-range 10.0.0.0/24 \
    --authorization-mode RBAC --allow-privileged=true
  wait_for kube-apiserver 90 curl -sf --cacert "$d/ca.crt" --cert "$d/admin.crt" --key "$d/admin.key" \
    "https://127.0.0.1:$api_port/readyz"
  kubeconfig

  start kube-controller-manager "$bin/kube-controller-manager" --kubeconfig "$dir/kubeconfig" \
    --leader-elect=false --secure-port 0 --root-ca-file "$d/ca.crt" \
    --service-account-private-key-file "$d/sa.key" --use-service-account-credentials=false
  start kube-scheduler "$bin/kube-scheduler" --kubeconfig "$dir/kubeconfig" --leader-elect=false --secure-port 0
  start kwok "$bin/kwok" --kubeconfig "$dir/kubeconfig" --config "$here/kwok.yaml" \
    --manage-nodes-with-label-selector tau2.dev/fake-node --node-lease-duration-seconds 40 \
    --cidr 10.244.0.0/16 --node-ip 10.1.0.1

  local kubectl=("$bin/kubectl" --kubeconfig "$dir/kubeconfig")
  # Nodes are created with their GPU capacity; `kubectl create` drops status, so
  # post the status through the subresource as a kubelet would.
  "${kubectl[@]}" create -f "$here/gpu-nodes.yaml" >/dev/null
  for node in gpu-node-0 gpu-node-1; do
    "${kubectl[@]}" patch node "$node" --subresource status --type merge -p \
      '{"status":{"capacity":{"cpu":"64","memory":"512Gi","pods":"110","nvidia.com/gpu":"8"},"allocatable":{"cpu":"64","memory":"512Gi","pods":"110","nvidia.com/gpu":"8"}}}' >/dev/null
  done
  wait_for "GPU nodes" 90 "${kubectl[@]}" wait --for condition=Ready node --all --timeout 1s
  wait_for "default ServiceAccount" 60 "${kubectl[@]}" get serviceaccount default -n default

  cat >"$dir/env" <<EOF
export KUBECONFIG=$dir/kubeconfig
export TAU2_CLUSTER_DIR=$dir
export PATH=$bin:\$PATH
EOF
  trap - ERR
  log "control plane up: API server https://127.0.0.1:$api_port, $(wc -l <"$dir/pids") processes (see $dir/pids)"
  echo "$dir"
}

down() {
  dir=${1:?usage: cluster.sh down DIR}
  [ -f "$dir/pids" ] || { log "no $dir/pids: nothing to stop"; return 0; }
  local pid name pids=()
  # Stop in reverse start order: clients first, etcd last.
  while read -r pid name; do
    pids=("$pid" "${pids[@]}")
    kill -TERM "$pid" 2>/dev/null || true
  done < <(tac "$dir/pids")
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.2
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
  log "control plane stopped"
}

case ${1:-} in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  *) echo "usage: $0 up [DIR] | down DIR" >&2; exit 2 ;;
esac
