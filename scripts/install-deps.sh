#!/usr/bin/env bash
# scripts/install-deps.sh — installs everything attn needs to build, test and run on Debian 12 (bookworm).
# Idempotent: when `dpkg -s` shows every package installed, apt is not touched at all.
#
#   scripts/install-deps.sh            # as root, or with sudo available
#   scripts/install-deps.sh --check    # only report what is missing (exit 1 if anything is)
#
# Python packages for `make bench` (torch, numpy, safetensors, tensorboard) live in a venv outside the
# source tree: see scripts/setup-venv.sh.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git    # toolchain (GCC 12: C++20, OpenMP via libgomp)
  python3 python3-venv                    # fixture scripts, scripts/setup-venv.sh
  libdnnl-dev                             # oneDNN: convolution / matmul primitives
  libopenblas-dev                         # BLAS
  zlib1g-dev                              # gzip'd IDX datasets
  nlohmann-json3-dev                      # safetensors headers, metrics JSON lines
  libcli11-dev                            # the attn CLI
  libgtest-dev libgmock-dev               # tests
  libbenchmark-dev                        # bench/
  libpng-dev libcairo2-dev                # images and plots
  libsentencepiece-dev sentencepiece      # tokenizers
  libutf8proc-dev libpcre2-dev            # Hugging Face tokenizers: Unicode data; GPT-2's pre-tokenisation regex
  dataset-fashion-mnist                   # /usr/share/datasets/fashion-mnist: the demo and tests' data
  libsword-utils sword-text-web sword-text-sparv sword-text-kjv  # Bible corpus (scripts/prepare_bible.py)
  clang libomp-dev                        # libFuzzer targets; clang's -fopenmp needs LLVM's libomp
  libopenmpi-dev openmpi-bin              # data-parallel training over MPI (src/dist/, docs/distributed.md)
)

missing=()
for p in "${PACKAGES[@]}"; do
  # `dpkg -s` also succeeds for removed-but-not-purged packages: require "install ok installed".
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi
echo "install-deps: missing: ${missing[*]}"
if [[ "${1:-}" == "--check" ]]; then
  exit 1
fi

SUDO=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    echo "install-deps: not root and no sudo: install the packages above by hand" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "install-deps: installed ${missing[*]}"
