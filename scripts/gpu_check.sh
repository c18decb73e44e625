#!/usr/bin/env bash
# Everything that needs the GPU, in one device call (see README, "Tests"):
#   bash scripts/gpu_check.sh [tests] [demo] [sanitize] [bench] [bench-quick] [launch]
# With no argument: tests demo sanitize bench. Logs and JSON land in $OUT when set.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/kaio_out}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || echo "editable install failed"
export KAIODSL_CACHE_DIR=/tmp/kaio_cache
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader
steps=${*:-tests demo sanitize bench}
rc=0
for step in $steps; do
  echo "=== $step"
  case $step in
    tests)
      timeout 400 python3 -m pytest -p no:cacheprovider -m gpu -q -rfE --tb=short tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -30
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    demo)
      KAIODSL_BACKEND=cuda timeout 200 python3 -m kaiodsl demo 2>&1 | grep -v "^   |" | tee "$OUT/demo.log" | tail -40 ;;
    sanitize)
      for tool in memcheck racecheck; do
        timeout 300 compute-sanitizer --tool $tool --error-exitcode 9 python3 scripts/sanitize_targets.py 2>&1 \
          | tee "$OUT/sanitize_$tool.log" | tail -8
      done ;;
    bench)
      timeout 500 python3 benchmarks/bench_gemm.py 2>&1 | tee "$OUT/bench_gemm.log" | tail -60
      cp benchmarks/results/gemm.json benchmarks/results/gemm.png "$OUT/" 2>/dev/null ;;
    bench-quick)
      timeout 300 python3 benchmarks/bench_gemm.py --quick 2>&1 | tee "$OUT/bench_gemm.log" | tail -30 ;;
    launch)
      timeout 150 python3 benchmarks/launch_overhead.py 2>&1 | tee "$OUT/launch.log" | tail -20
      cp benchmarks/results/launch_overhead.json "$OUT/" 2>/dev/null ;;
  esac
done
exit $rc
