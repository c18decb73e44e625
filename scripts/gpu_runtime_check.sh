#!/usr/bin/env bash
# The runtime's GPU checks in one device run: the GPU-marked runtime tests and the
# launch-overhead benchmark. Usage (on the device, from the repo root):
#   bash scripts/gpu_runtime_check.sh
# Results land in $OUT (pytest log, benchmark JSON) when OUT is set.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kaio_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
export KAIODSL_CACHE_DIR=/tmp/kaio_cache
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 -c "import torch, cupy, triton, cuda.bindings as cb; print('torch', torch.__version__, 'cupy', cupy.__version__, 'triton', triton.__version__, 'cuda.bindings', cb.__version__)" 2>&1 | tail -1
timeout 120 python3 -m pytest -p no:cacheprovider tests/runtime -q -rs --tb=short 2>&1 | tee "$OUT/pytest_runtime.log" | tail -40
rc=${PIPESTATUS[0]}
timeout 150 python3 benchmarks/launch_overhead.py 2>&1 | tee "$OUT/bench.log"
echo "pytest rc=$rc"
exit $rc
