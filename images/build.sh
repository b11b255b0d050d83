#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Builds the container images from this checkout (the build context is the
# repository root; .dockerignore keeps target/, .libtorch and venvs out).
#
#   images/build.sh operator|worker-cpu|worker-cuda|all [TAG] [docker build args...]
#
# Tags (TAG defaults to dev; REGISTRY to ghcr.io/tau2-operator, the chart's):
#   operator     $REGISTRY/tau2-operator:TAG
#   worker-cpu   $REGISTRY/tau2-worker:TAG-cpu
#   worker-cuda  $REGISTRY/tau2-worker:TAG-cuda   (the chart's default workerImage form)
# Extra arguments go to `docker build`, e.g. --push, --platform, or
# --build-arg CUDA_VERSION=... (see images/worker/Dockerfile).
# Needs a Docker engine with BuildKit (Docker 23 or later by default).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

what=${1:?usage: images/build.sh operator|worker-cpu|worker-cuda|all [TAG] [docker build args...]}
tag=${2:-dev}
shift $(($# < 2 ? $# : 2))
registry=${REGISTRY:-ghcr.io/tau2-operator}

build() {
    echo "images/build.sh: building $1" >&2
    local image=$1
    shift
    DOCKER_BUILDKIT=1 docker build -t "$image" "$@" .
}

case "$what" in
    operator) build "$registry/tau2-operator:$tag" -f images/operator/Dockerfile "$@" ;;
    worker-cpu) build "$registry/tau2-worker:$tag-cpu" -f images/worker/Dockerfile --target cpu "$@" ;;
    worker-cuda) build "$registry/tau2-worker:$tag-cuda" -f images/worker/Dockerfile --target cuda "$@" ;;
    all)
        "$0" operator "$tag" "$@"
        "$0" worker-cpu "$tag" "$@"
        "$0" worker-cuda "$tag" "$@"
        ;;
    *) echo "images/build.sh: unknown image $what (operator, worker-cpu, worker-cuda, all)" >&2; exit 2 ;;
esac
