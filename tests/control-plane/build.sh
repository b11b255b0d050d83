#!/usr/bin/env bash
# Builds the test control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok, helm) from the Go modules pinned under go/, into
# a cache directory keyed by the versions and go.sum files, and prints that
# directory. A complete cache is reused as is; nothing is ever built in the repo.
#
#   tests/control-plane/build.sh          # build if needed, print the bin dir
#   TAU2_CACHE=/path tests/control-plane/build.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
go_dir=$here/go
cache_root=${TAU2_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator}

kube_version=$(sed -n 's#^[[:space:]]*k8s.io/kubernetes v\([0-9.]*\).*#\1#p' "$go_dir/k8s/go.mod" | head -n1)
[ -n "$kube_version" ] || { echo "build.sh: no k8s.io/kubernetes version in $go_dir/k8s/go.mod" >&2; exit 1; }
key=$( (go version; cat "$go_dir"/*/go.mod "$go_dir"/*/go.sum) | sha256sum | cut -c1-16)
bin=$cache_root/control-plane/v$kube_version-$key

# Kueue is cached apart (its own key) and built on first use by
# `kueue.sh up`: no test in the default path starts it yet (issue 13, item 7),
# so setup does not pay its cold build (about 12 minutes on 2 cores).

if [ -f "$bin/.complete" ]; then
  echo "$bin"
  exit 0
fi

log() { echo "build.sh: $*" >&2; }
tmp=$bin.tmp.$$
rm -rf "$tmp"
mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

minor=${kube_version#1.}
minor=${minor%%.*}
# Version stamps as upstream's hack/lib/version.sh sets them, so that clients
# (kube-rs, kubectl, helm) see a real server version.
stamp="-X k8s.io/component-base/version.gitVersion=v$kube_version"
stamp+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"
stamp+=" -X k8s.io/client-go/pkg/version.gitVersion=v$kube_version"
stamp+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false
start=$(date +%s)
log "building Kubernetes v$kube_version binaries into $bin (cold: 15-30 min on 2 cores)"
(cd "$go_dir/k8s" && go build -trimpath -ldflags "-s -w $stamp" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
log "building etcd"
(cd "$go_dir/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3)
log "building kwok"
(cd "$go_dir/kwok" && go build -trimpath -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok)
log "building helm"
(cd "$go_dir/helm" && go build -trimpath -ldflags "-s -w" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm)

"$tmp/kube-apiserver" --version >&2
"$tmp/etcd" --version | head -n1 >&2
touch "$tmp/.complete"
rm -rf "$bin"
mv "$tmp" "$bin"
trap - EXIT
log "done in $(($(date +%s) - start)) s"
echo "$bin"
