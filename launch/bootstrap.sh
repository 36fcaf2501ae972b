#!/usr/bin/env bash
# bootstrap.sh: sets a Debian 12 machine up for gptrain and builds it.
# Installs the Debian packages the project needs (only those missing, without
# prompts), then configures and builds into build/. Safe to run again.
#   bash launch/bootstrap.sh           runtime + test dependencies, then build
#   bash launch/bootstrap.sh --bench   also PyTorch (CPU) for the benchmark peer and
#                                      text packages for the tokenizer benchmark
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config openmpi-bin libopenmpi-dev libhdf5-openmpi-dev
      hdf5-tools libcmocka-dev libopenblas-openmp-dev fortunes clang libclang-rt-14-dev
      slurm-wlm munge gnuplot-nox)
[ "${1:-}" = "--bench" ] && pkgs+=(python3-torch python3-numpy python3-h5py python3.11-doc dict-gcide)

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGPTRAIN_TESTS=ON >/dev/null
cmake --build build -j"$(nproc)"
echo "bootstrap: built build/runtime/gptrain"
