#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, the CUDA toolkit (nvcc), CMake >= 3.18, Ninja
# and a Python with torch (CUDA build), numpy, pybind11 and pytest (torchvision optional):
#   1. builds pydetect in place with its CUDA kernels forced on (the wheel's architectures);
#   2. runs tests/ops/test_cuda.py (CUDA kernels against the CPU ones, the device parameter);
#   3. prints timings against torchvision and Faster R-CNN training steps on the GPU
#      (benchmarks/bench_cuda.py).
# Usage: benchmarks/gpu_check.sh [python]      (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
command -v nvcc >/dev/null || { echo "gpu_check: no nvcc on PATH (install the CUDA toolkit)"; exit 1; }
"$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; \
print('GPU:', torch.cuda.get_device_name(), '| torch', torch.__version__, 'CUDA', torch.version.cuda)"

start=$(date +%s)
cmake -S . -B build/gpu -G Ninja -DPYDETECT_CUDA=ON -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="${PYBIND11_DIR:-$("$PY" -m pybind11 --cmakedir)}" >/dev/null
cmake --build build/gpu
echo "build: $(( $(date +%s) - start )) s"

PYTHONPATH=. "$PY" -m pytest -q -p no:cacheprovider -rs tests/ops/test_cuda.py
PYTHONPATH=. "$PY" benchmarks/bench_cuda.py
