#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# End to end on kind, for machines with a Docker engine: creates a kind cluster
# (pinned node image), builds the operator and CPU worker images, loads them
# into the cluster, installs the Helm chart, applies the tiny pipeline
# (manifests/examples/tiny-pipeline.yaml), waits for Succeeded, checks that
# the status has checkpoints and pass@k results and that every tau2_* metric
# the Grafana dashboards query is on the leader's /metrics, then deletes the
# cluster. Prints "skipped: ..." and exits 0 where there is no Docker engine
# (or no kind and no Go to build it), so CI without Docker stays green and says so.
#
#   tests/kind/e2e.sh
#
# Environment:
#   KEEP_CLUSTER=1       keep the cluster (and what runs in it) afterwards
#   KIND_CLUSTER         cluster name (default tau2-e2e); an existing cluster
#                        of that name is reused and then left alone
#   IMAGE_TAG            tag of the images built (default kind-e2e)
#   SKIP_BUILD=1         use already built images of that tag
#   PIPELINE_TIMEOUT     seconds to wait for the pipeline (default 2400)
#   KIND                 a kind binary; default: kind on PATH if it is
#                        $KIND_VERSION, else built once with `go install` into
#                        ~/.cache/tau2-operator/kind-$KIND_VERSION/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log() { echo "kind-e2e: $*" >&2; }
skip() {
    echo "skipped: $*"
    exit 0
}

# kind and the node image it was released with (the digest guarantees an image
# built for this kind version). Kubernetes 1.36, as the operator's k8s-openapi
# feature and the test control plane.
KIND_VERSION=v0.33.0
NODE_IMAGE=kindest/node:v1.36.4@sha256:099e049362a1526b2db71494e1947aae99bd16290d7c895f2b7ea312e3cbfaed

cluster=${KIND_CLUSTER:-tau2-e2e}
tag=${IMAGE_TAG:-kind-e2e}
registry=ghcr.io/tau2-operator
operator_image=$registry/tau2-operator:$tag
worker_image=$registry/tau2-worker:$tag-cpu
release=tau2-operator
system_ns=tau2-system
ns=tau2-e2e
pipeline=tiny
timeout=${PIPELINE_TIMEOUT:-2400}

# --- Prerequisites: a Docker engine, kind, helm, kubectl, curl.
command -v docker >/dev/null || skip "Docker engine not available (no docker command)"
docker info >/dev/null 2>&1 || skip "Docker engine not available (docker info failed)"

cache=${XDG_CACHE_HOME:-$HOME/.cache}/tau2-operator
kind=${KIND:-}
if [[ -z "$kind" ]] && command -v kind >/dev/null && [[ "$(kind version 2>/dev/null)" == "kind $KIND_VERSION "* ]]; then
    kind=$(command -v kind)
fi
if [[ -z "$kind" ]]; then
    kind=$cache/kind-$KIND_VERSION/kind
    if [[ ! -x "$kind" ]]; then
        command -v go >/dev/null || skip "kind not available (no kind $KIND_VERSION on PATH and no Go to build it)"
        log "building kind $KIND_VERSION into $(dirname "$kind")"
        GOBIN=$(dirname "$kind") go install "sigs.k8s.io/kind@$KIND_VERSION" \
            || skip "kind not available (go install sigs.k8s.io/kind@$KIND_VERSION failed)"
    fi
fi
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
    # The test control plane's build has both (built from Go modules, cached).
    PATH=$(tests/control-plane/build.sh):$PATH
fi
command -v curl >/dev/null || { log "curl is required"; exit 1; }
[[ -f charts/tau2-operator/Chart.yaml ]] || { log "no Helm chart in charts/tau2-operator"; exit 1; }
shopt -s nullglob
dashboards=(charts/tau2-operator/dashboards/*.json)
shopt -u nullglob
((${#dashboards[@]})) || { log "no dashboards in charts/tau2-operator/dashboards"; exit 1; }

# --- Cleanup: only what this script started or created.
created=0
pf_pid=
kubeconfig=$(mktemp)
export KUBECONFIG=$kubeconfig
cleanup() {
    local status=$?
    if [[ -n "$pf_pid" ]]; then kill "$pf_pid" 2>/dev/null || true; fi
    if ((status != 0)); then
        log "failed; state of the cluster:"
        kubectl get tau2pipelines,jobs,pods,pvc -n "$ns" -o wide >&2 || true
        kubectl get tau2pipeline "$pipeline" -n "$ns" -o yaml >&2 || true
        kubectl get pods -n "$system_ns" -o wide >&2 || true
        kubectl logs -n "$system_ns" -l app.kubernetes.io/name=tau2-operator --tail=50 --prefix >&2 || true
        kubectl logs -n "$ns" -l tau2.dev/pipeline="$pipeline" --tail=30 --prefix >&2 || true
        kubectl get events -n "$ns" --sort-by=.lastTimestamp >&2 || true
    fi
    if ((created)) && [[ "${KEEP_CLUSTER:-0}" != 1 ]]; then
        log "deleting kind cluster $cluster"
        "$kind" delete cluster --name "$cluster" >&2 || true
    elif ((created)); then
        log "keeping kind cluster $cluster (KEEP_CLUSTER=1): kind export kubeconfig --name $cluster"
    fi
    rm -f "$kubeconfig"
    exit "$status"
}
trap cleanup EXIT

# --- Cluster.
if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
    log "reusing kind cluster $cluster"
else
    log "creating kind cluster $cluster ($NODE_IMAGE)"
    created=1
    "$kind" create cluster --name "$cluster" --image "$NODE_IMAGE" --wait 5m >&2
fi
"$kind" export kubeconfig --name "$cluster" --kubeconfig "$kubeconfig" >&2

# --- Images: built from this checkout, loaded into the nodes (no registry).
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building $operator_image and $worker_image (the worker's first build compiles libtorch bindings: 10+ minutes)"
    images/build.sh operator "$tag" >&2
    images/build.sh worker-cpu "$tag" >&2
fi
"$kind" load docker-image --name "$cluster" "$operator_image" "$worker_image" >&2

# --- The chart.
log "helm install $release"
helm upgrade --install "$release" charts/tau2-operator -n "$system_ns" --create-namespace \
    --set image.tag="$tag" --set image.pullPolicy=IfNotPresent \
    --set workerImage="$worker_image" --wait --timeout 5m >&2

# --- The tiny pipeline.
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >&2
kubectl apply -n "$ns" -f manifests/examples/tiny-pipeline.yaml >&2
log "waiting up to ${timeout}s for tau2pipeline/$pipeline to succeed"
deadline=$((SECONDS + timeout))
while ! kubectl wait -n "$ns" --for=condition=Succeeded "tau2pipeline/$pipeline" --timeout=30s >/dev/null 2>&1; do
    kubectl get -n "$ns" tau2pipeline "$pipeline" --no-headers >&2 || true
    if [[ "$(kubectl get -n "$ns" tau2pipeline "$pipeline" -o jsonpath='{.status.phase}')" == Failed ]]; then
        log "the pipeline failed: $(kubectl get -n "$ns" tau2pipeline "$pipeline" \
            -o jsonpath='{.status.conditions[?(@.type=="Failed")].message}')"
        exit 1
    fi
    ((SECONDS < deadline)) || { log "timed out after ${timeout}s"; exit 1; }
done
kubectl get -n "$ns" tau2pipeline "$pipeline" >&2

# --- Status: a final checkpoint for every phase, and the eval results.
jp() { kubectl get -n "$ns" tau2pipeline "$pipeline" -o jsonpath="$1"; }
fail=0
for phase in sft rft grpo eval; do
    state=$(jp "{.status.phases.$phase.state}")
    final=$(jp "{.status.phases.$phase.finalCheckpoint}")
    log "phase $phase: $state, final checkpoint ${final:-none}"
    [[ "$state" == Succeeded && -n "$final" ]] || fail=1
done
checkpoints=$(jp '{range .status.checkpoints[*]}{.path}{"\n"}{end}' | grep -c . || true)
log "checkpoints in status: $checkpoints"
((checkpoints > 0)) || fail=1
for field in passAt1 passAtK passHatK averageReward; do
    value=$(jp "{.status.results.overall.$field}")
    log "results.overall.$field = ${value:-missing}"
    [[ -n "$value" ]] || fail=1
done
[[ "$(jp '{.status.results.domains[*].domain}')" == *mock* ]] || { log "no mock domain in status.results.domains"; fail=1; }
((fail == 0)) || { log "the status lacks checkpoints or results"; exit 1; }

# --- Metrics: the leader's /metrics (a port-forward to the Service would pick
# any replica, and only the leader reconciles and takes progress reports).
leader=$(kubectl get pods -n "$system_ns" -l tau2.dev/leader=true -o name | head -n1)
[[ -n "$leader" ]] || { log "no pod labelled tau2.dev/leader=true in $system_ns"; exit 1; }
port=$((20000 + RANDOM % 20000))
kubectl port-forward -n "$system_ns" "$leader" "$port:8080" >/dev/null 2>&1 &
pf_pid=$!
metrics=
for _ in $(seq 60); do
    metrics=$(curl -fsS "http://127.0.0.1:$port/metrics" 2>/dev/null) && break
    sleep 1
done
[[ -n "$metrics" ]] || { log "could not read /metrics through the port-forward"; exit 1; }
# The operator exports its fixed series (error and rejection reasons, phases)
# from the start, and the tiny pipeline sets every per-pipeline one.
missing=0
mapfile -t names < <(grep -oh 'tau2_[a-z0-9_]*' "${dashboards[@]}" | sed -E 's/_(bucket|sum|count)$//' | sort -u)
for name in "${names[@]}"; do
    if ! grep -Eq "^${name}(_bucket|_sum|_count)?(\{| )" <<<"$metrics"; then
        log "metric $name: queried by a dashboard, not on /metrics"
        missing=1
    fi
done
((missing == 0)) || exit 1
log "${#names[@]} dashboard metric names checked on $leader"

echo "kind e2e: passed (tau2pipeline/$pipeline Succeeded; checkpoints, pass@k and dashboard metrics present)"
