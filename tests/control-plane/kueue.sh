#!/usr/bin/env bash
# Kueue (sigs.k8s.io/kueue, pinned in kueue/go.mod) on the test control plane.
#
#   tests/control-plane/kueue.sh build        # build if needed, print its cache dir
#   tests/control-plane/kueue.sh up DIR       # on the cluster of `cluster.sh up DIR`:
#                                             # install Kueue's CRDs and kueue/queues.yaml,
#                                             # start the controller manager, wait until ready
#   tests/control-plane/kueue.sh down DIR     # stop the Kueue that `up DIR` started
#
# `build` puts the kueue binary and the module's CRDs (config/components/crd/bases)
# under ~/.cache/tau2-operator/kueue/v<version>-<key>, keyed by the Go version and
# kueue/go.{mod,sum}; a complete cache is reused as is.
#
# Kueue runs as users run it without cert-manager or its internal cert rotation:
# internalCertManagement is off and the serving certificate is ours (signed by the
# cluster's CA). Its webhooks are served but not registered with the API server:
# the operator creates a queued pipeline's Jobs suspended itself, which is what
# Kueue's Job webhook would otherwise do, so the tests show that the operator
# does not rely on it. Only the batch/job integration is enabled.
#
# `up` records Kueue's PID in DIR/pids too, so `cluster.sh down DIR` stops it
# if `kueue.sh down` was never called.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mod_dir=$here/kueue
cache_root=${TAU2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator}
log() { echo "kueue.sh: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

build() {
  local version key out tmp start
  version=$(sed -n 's#^[[:space:]]*sigs.k8s.io/kueue v\([0-9.]*\).*#\1#p' "$mod_dir/go.mod" | head -n1)
  [ -n "$version" ] || { log "no sigs.k8s.io/kueue version in $mod_dir/go.mod"; exit 1; }
  key=$( (go version; cat "$mod_dir/go.mod" "$mod_dir/go.sum") | sha256sum | cut -c1-16)
  out=$cache_root/kueue/v$version-$key
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return 0
  fi
  tmp=$out.tmp.$$
  rm -rf "$tmp"
  mkdir -p "$tmp/crds"
  trap 'rm -rf "$tmp"' EXIT
  start=$(date +%s)
  log "building Kueue v$version into $out (cold: several minutes on 2 cores)"
  (cd "$mod_dir" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kueue/pkg/version.GitVersion=v$version" \
    -o "$tmp/kueue" sigs.k8s.io/kueue/cmd/kueue)
  local src
  src=$(cd "$mod_dir" && go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
  cp "$src"/config/components/crd/bases/*.yaml "$tmp/crds/"
  touch "$tmp/.complete"
  rm -rf "$out"
  mv "$tmp" "$out"
  trap - EXIT
  log "done in $(($(date +%s) - start)) s"
  echo "$out"
}

# certs DIR: a serving certificate for 127.0.0.1 signed by the cluster's CA.
certs() {
  local pki=$1/pki d=$1/kueue/certs
  mkdir -p "$d"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=kueue-webhook \
    -keyout "$d/tls.key" -out "$d/tls.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$d/tls.ext"
  openssl x509 -req -in "$d/tls.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 7 -extfile "$d/tls.ext" -out "$d/tls.crt" 2>/dev/null
}

up() {
  local dir=${1:?usage: kueue.sh up CLUSTER_DIR}
  [ -f "$dir/kubeconfig" ] || { log "$dir is no cluster of cluster.sh up (no kubeconfig)"; exit 1; }
  local out k=$dir/kueue health webhook
  out=$(build)
  local kubectl=(kubectl --kubeconfig "$dir/kubeconfig")
  PATH=$("$here/build.sh"):$PATH
  mkdir -p "$k/etc/kueue/metrics" "$k/etc-work"
  certs "$dir"
  # With internalCertManagement off, Kueue reads its metrics certificate from the
  # fixed path /etc/kueue/metrics/certs. Kueue alone sees an /etc with ours there
  # (an overlay in a mount namespace of its own); the machine's /etc is untouched.
  ln -sfn "$k/certs" "$k/etc/kueue/metrics/certs"
  health=$(free_port)
  webhook=$(free_port)
  cat >"$k/config.yaml" <<EOF
apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health: {healthProbeBindAddress: "127.0.0.1:$health"}
metrics: {bindAddress: "0"}
webhook: {host: 127.0.0.1, port: $webhook, certDir: "$k/certs"}
leaderElection: {leaderElect: false}
internalCertManagement: {enable: false}
manageJobsWithoutQueueName: false
integrations: {frameworks: [batch/job]}
EOF

  "${kubectl[@]}" apply --server-side -f "$out/crds" >/dev/null
  "${kubectl[@]}" wait --for condition=Established crd --all --timeout 60s >/dev/null
  "${kubectl[@]}" create namespace kueue-system --dry-run=client -o yaml | "${kubectl[@]}" apply -f - >/dev/null

  setsid unshare --mount --propagation private sh -c \
    'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/etc-work" /etc && shift && exec "$@"' \
    sh "$k" env KUBECONFIG="$dir/kubeconfig" "$out/kueue" --config "$k/config.yaml" \
    --feature-gates VisibilityOnDemand=false >"$dir/logs/kueue.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$k/pid"
  echo "$pid kueue" >>"$dir/pids"

  local deadline=$((SECONDS + 60))
  until curl -sf "http://127.0.0.1:$health/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
      log "Kueue did not become ready; last log lines:"
      tail -n 30 "$dir/logs/kueue.log" >&2 || true
      down "$dir"
      exit 1
    fi
    sleep 0.5
  done
  "${kubectl[@]}" apply --server-side --force-conflicts -f "$mod_dir/queues.yaml" >/dev/null
  "${kubectl[@]}" wait --for condition=Active clusterqueue/tau2-gpu --timeout 60s >/dev/null
  log "Kueue up (PID $pid, log $dir/logs/kueue.log)"
}

down() {
  local dir=${1:?usage: kueue.sh down CLUSTER_DIR}
  local k=$dir/kueue pid
  [ -f "$k/pid" ] || { log "no $k/pid: nothing to stop"; return 0; }
  pid=$(cat "$k/pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$pid" 2>/dev/null || true
  # Forget the PID, so that `cluster.sh down` never signals a process that reused it.
  sed -i "/^$pid kueue\$/d" "$dir/pids"
  rm -f "$k/pid"
  log "Kueue stopped"
}

case ${1:-} in
  build) build ;;
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  *) echo "usage: $0 build | up CLUSTER_DIR | down CLUSTER_DIR" >&2; exit 2 ;;
esac
