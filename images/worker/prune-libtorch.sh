#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Copyright (c) tau2-operator authors.
#
# Shrinks a `pip install --target DIR` of torch (and its NVIDIA wheels) to the
# shared libraries a libtorch program loads, after tau2-worker was built
# against it (the build needs torch/include). Keeps the layout: torch/lib next
# to nvidia/, which the wheels' $ORIGIN-relative RPATHs expect.
#
#   images/worker/prune-libtorch.sh cpu|cuda DIR
#
# cpu: tau2-worker links libtorch_cpu.so and libc10.so only, and those need
# libgomp (bundled), libcudart.so.13 and libcupti.so.13 (shared/spec/tch.md),
# so every CUDA library except those two goes. cuda: libtorch_cuda.so loads or
# dlopens the NVIDIA libraries (cuBLAS, cuDNN's engines, NCCL, nvrtc...), so
# all of them stay; only headers, static archives and Python parts go.
set -euo pipefail
variant=${1:?usage: prune-libtorch.sh cpu|cuda DIR}
dir=${2:?usage: prune-libtorch.sh cpu|cuda DIR}
[[ -d "$dir/torch/lib" ]] || { echo "prune-libtorch.sh: no $dir/torch/lib" >&2; exit 1; }

# Everything but the shared libraries: Python packages, headers, CMake files,
# scripts, metadata.
find "$dir" -mindepth 1 -maxdepth 1 ! -name torch ! -name nvidia -exec rm -rf {} +
find "$dir/torch" -mindepth 1 -maxdepth 1 ! -name lib -exec rm -rf {} +
if [[ -d "$dir/nvidia" ]]; then
    find "$dir/nvidia" \( -name include -o -name __pycache__ \) -type d -prune -exec rm -rf {} +
    find "$dir/nvidia" \( -name '*.a' -o -name '*.py' -o -name '*.h' \) -type f -delete
fi
# Python's own libraries (torch._C and its multiprocessing helpers).
rm -rf "$dir"/torch/lib/libtorch_python.so "$dir"/torch/lib/libshm* "$dir"/torch/lib/libtorch_global_deps.so

case "$variant" in
    cpu)
        rm -f "$dir"/torch/lib/libtorch_cuda*.so "$dir"/torch/lib/libc10_cuda.so \
            "$dir"/torch/lib/libcaffe2_nvrtc.so "$dir"/torch/lib/libtorch_nvshmem.so
        find "$dir/nvidia" -type f ! -name 'libcudart.so.*' ! -name 'libcupti.so.*' -delete
        ;;
    cuda) ;;
    *) echo "prune-libtorch.sh: variant must be cpu or cuda, not $variant" >&2; exit 1 ;;
esac
find "$dir" -type d -empty -delete
du -sh "$dir" >&2
