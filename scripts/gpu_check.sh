#!/usr/bin/env bash
# Everything that needs the GPU, in one device call (see README, "Tests"):
#   bash scripts/gpu_check.sh [step ...]
# Steps:
#   tests            the whole GPU tier (pytest -m gpu)
#   tests=PATHS      the GPU tier of some test paths (comma-separated), e.g. tests=tests/hopper,tests/codegen
#   demo             python -m kaiodsl demo on the GPU
#   sanitize         compute-sanitizer memcheck + racecheck over scripts/sanitize_targets.py (SANITIZE_TOOLS, SANITIZE_TIMEOUT;
#                    SANITIZE_WHAT=decode: the decode weight streams only)
#   bench / bench-quick             benchmarks/bench_gemm.py (full / --quick)
#   bench=ARGS       benchmarks/bench_gemm.py with ARGS ('+' becomes a space), e.g. bench=--only+int8+--squares+4096
#   ptests=G;G;...   groups of test paths (comma-separated) run as parallel pytest -v processes (the compiles
#                    use the host's cores); prints each failure as it happens and each group's summary
#   bench-old        benchmarks/bench_gemm.py --quick of the tree in .old/ (a `git archive` of an older
#                    commit, carried), in the same call, for before/after ratios
#   bench-attn / bench-qkv / bench-decode   the attention, QKV and model-decode benchmarks (--quick; ATTN_ARGS=--sweep
#                    for the forward config sweep, QKV_ARGS= (empty) for the full QKV plan)
#   bench-attn-full  benchmarks/bench_attention.py, the full plan; ATTN_SHARD=K/N runs a share of it, merged into
#                    benchmarks/results/attention.json
#   launch           benchmarks/launch_overhead.py
#   custom-op        benchmarks/launch_overhead.py --custom-op (the PyTorch dispatcher's cost per call)
#   host             benchmarks/host_overhead.py --profile (host time per eager op call, and where it goes)
#   tune=OP:SHAPES   python -m kaiodsl tune --op OP --shapes SHAPES into this device's table (copied to $OUT)
#   tutorial         examples/gemm/bench.py (the GEMM tutorial's levels beside cuBLAS)
#   ncu=T,T          ncu (Speed of Light + tensor-pipe, issue, stall, bank-conflict metrics) over scripts/ncu_targets.py T
#   ncu-src=T        ncu's per-SASS-instruction warp-state samples (SourceCounters) of target T's kernel: the CSV
#                    source page in $OUT (scripts/ncu_hot.py ranks its stalls)
#   hopper           examples/hopper_gemm.py at full size
#   sanitize-sm90    compute-sanitizer memcheck + racecheck over scripts/sanitize_sm90.py (the sm_90a kernels; SM90_OPS
#                    picks its ops)
#   py=SCRIPT+ARGS   python3 SCRIPT ARGS ('+' becomes a space), its log in $OUT (PY_TIMEOUT, PY_TAIL)
#   keep=G,G         copy benchmarks/results/G (globs, e.g. attention_hopper.json) into $OUT (runs past DEADLINE)
#   decode-sweep     scripts/decode_sweep.py: attention decode bandwidth against the KV split count
# With no argument: tests demo sanitize bench. Logs and JSON land in $OUT when set.
# DEADLINE=S skips the steps that would start after S seconds; TEST_TIMEOUT=S bounds each tests= step.
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
start=$(date +%s)
for step in $steps; do
  if [ -n "${DEADLINE:-}" ] && [ $(( $(date +%s) - start )) -ge "$DEADLINE" ] && [ "${step#keep=}" = "$step" ]; then
    echo "=== $step skipped: past DEADLINE=$DEADLINE s"; continue
  fi
  echo "=== $step ($(date +%T))"
  case $step in
    tests)
      timeout 500 python3 -m pytest -p no:cacheprovider -m gpu -q -rfE --tb=short tests 2>&1 | tee "$OUT/pytest_gpu.log" | tail -40
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    tests=*)
      paths=${step#tests=}; paths=${paths//,/ }
      timeout ${TEST_TIMEOUT:-500} python3 -m pytest -p no:cacheprovider -m gpu -q -rfE --tb=short $paths 2>&1 \
        | tee -a "$OUT/pytest_gpu.log" | grep -E "passed|failed|FAILED|ERROR|error" | tail -20
      [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1 ;;
    ptests=*)
      groups=${step#ptests=}; IFS=';' read -ra gs <<< "$groups"; n=0
      for g in "${gs[@]}"; do
        n=$((n+1))
        (timeout ${TEST_TIMEOUT:-500} python3 -m pytest -p no:cacheprovider -m gpu -v -rfE --tb=line ${g//,/ } \
          > "$OUT/ptests_$n.log" 2>&1; echo "group $n exit $?" >> "$OUT/ptests_$n.log") &
      done
      wait
      for i in $(seq 1 $n); do
        echo "--- group $i: ${gs[$((i-1))]}"
        grep -E " FAILED| ERROR|^E |^/.*Error|[0-9]+ (passed|failed)|group $i exit" "$OUT/ptests_$i.log" | grep -v "^PASSED" | tail -25
        grep -q "group $i exit 0" "$OUT/ptests_$i.log" || rc=1
      done ;;
    demo)
      KAIODSL_BACKEND=cuda timeout 200 python3 -m kaiodsl demo 2>&1 | grep -v "^   |" | tee "$OUT/demo.log" | tail -30 ;;
    sanitize)
      for tool in ${SANITIZE_TOOLS:-memcheck racecheck}; do
        timeout ${SANITIZE_TIMEOUT:-300} compute-sanitizer --tool $tool --error-exitcode 9 python3 scripts/sanitize_targets.py $SANITIZE_WHAT 2>&1 \
          | tee "$OUT/sanitize_$tool.log" | tail -8
      done ;;
    bench)
      timeout 500 python3 benchmarks/bench_gemm.py 2>&1 | tee "$OUT/bench_gemm.log" | tail -60
      cp benchmarks/results/gemm.json benchmarks/results/gemm.png "$OUT/" 2>/dev/null ;;
    bench=*)
      args=${step#bench=}; args=${args//+/ }
      timeout 300 python3 benchmarks/bench_gemm.py $args 2>&1 | tee -a "$OUT/bench_gemm_var.log" | grep -v "^wrote" | tail -30 ;;
    bench-quick)
      timeout 300 python3 benchmarks/bench_gemm.py --quick 2>&1 | tee "$OUT/bench_gemm.log" | tail -40
      cp benchmarks/results/gemm.json benchmarks/results/gemm.png "$OUT/" 2>/dev/null ;;
    bench-old)
      rm -rf /tmp/old && cp -r .old /tmp/old && cp -r /tmp/old/ops /tmp/old/kaiodsl/ops \
        && cp -r /tmp/old/ptx_templates /tmp/old/kaiodsl/ptx_templates
      (cd /tmp/old && PYTHONPATH=/tmp/old${PYTHONPATH:+:$PYTHONPATH} KAIODSL_CACHE_DIR=/tmp/kaio_cache_old \
        timeout 300 python3 benchmarks/bench_gemm.py --quick 2>&1 | tee "$OUT/bench_gemm_old.log" | tail -40)
      cp /tmp/old/benchmarks/results/gemm.json "$OUT/gemm_old.json" 2>/dev/null ;;
    bench-attn)
      timeout ${ATTN_TIMEOUT:-400} python3 benchmarks/bench_attention.py --quick ${ATTN_ARGS:-} 2>&1 | tee "$OUT/bench_attention.log" | tail -40
      cp benchmarks/results/attention*.json benchmarks/results/attention*.png "$OUT/" 2>/dev/null ;;
    bench-attn-full)
      timeout ${ATTN_TIMEOUT:-500} python3 benchmarks/bench_attention.py --shard ${ATTN_SHARD:-0/1} ${ATTN_ARGS:-} 2>&1 \
        | tee "$OUT/bench_attention_full.log" | grep -v "^   *(" | cut -c1-150 | tail -70
      cp benchmarks/results/attention.json benchmarks/results/attention.png "$OUT/" 2>/dev/null ;;
    bench-qkv)
      timeout ${QKV_TIMEOUT:-300} python3 benchmarks/bench_qkv.py ${QKV_ARGS---quick} 2>&1 | tee "$OUT/bench_qkv.log" | tail -40
      cp benchmarks/results/qkv*.json benchmarks/results/qkv*.png "$OUT/" 2>/dev/null ;;
    bench-decode)
      timeout 300 python3 benchmarks/bench_decode.py ${DECODE_ARGS:-} 2>&1 | tee "$OUT/bench_decode.log" | tail -30
      cp benchmarks/results/decode*.json "$OUT/" 2>/dev/null ;;
    launch)
      timeout 150 python3 benchmarks/launch_overhead.py 2>&1 | tee "$OUT/launch.log" | tail -20
      cp benchmarks/results/launch_overhead.json "$OUT/" 2>/dev/null ;;
    custom-op)
      timeout 120 python3 benchmarks/launch_overhead.py --custom-op 2>&1 | tee "$OUT/custom_op.log" | tail -12 ;;
    host)
      timeout 150 python3 benchmarks/host_overhead.py --profile 2>&1 | tee "$OUT/host_overhead.log" | tail -120
      cp benchmarks/results/host_overhead.json "$OUT/" 2>/dev/null ;;
    tune=*)
      spec=${step#tune=}; op=${spec%%:*}; shapes=${spec#*:}
      timeout 420 python3 -m kaiodsl tune --op "$op" --shapes "$shapes" --dtype ${TUNE_DTYPES:-f16} --max-candidates ${TUNE_MAX:-24} \
        --budget-seconds 360 2>&1 | tr '\r' '\n' | grep -v "^\[" | tee "$OUT/tune_$op.log" | tail -40
      cp kaiodsl/tuning/tables/*.json "$OUT/" 2>/dev/null ;;
    tutorial)
      timeout 300 python3 examples/gemm/bench.py --update-readme 2>&1 | tee "$OUT/tutorial.log" | tail -20
      cp benchmarks/results/gemm_tutorial.json examples/gemm/README.md "$OUT/" 2>/dev/null ;;
    sanitize-sm90)
      timeout 120 compute-sanitizer --tool memcheck --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_sm90.py ${SM90_OPS:-attention attention_bwd attention_fp8 qkv w4} 2>&1 \
        | tee "$OUT/sanitize_sm90_memcheck.log" | tail -6
      timeout 150 compute-sanitizer --tool racecheck --report-api-errors no --error-exitcode 9 python3 scripts/sanitize_sm90.py ${SM90_OPS:-attention attention_bwd attention_fp8 w4} 2>&1 \
        | tee "$OUT/sanitize_sm90_racecheck.log" | tail -6 ;;
    ncu=*)
      targets=${step#ncu=}; targets=${targets//,/ }
      for t in $targets; do
        echo "--- ncu $t"
        timeout 120 ncu --clock-control none --launch-skip 2 --launch-count 2 --kernel-name regex:'gemm_sm90|w4a16|attn_dkdv|attn_dq|attn_fwd|attn_combine|qkv_' \
          --section SpeedOfLight --section WarpStateStats --metrics 'regex:sm__pipe_tensor_op.*_cycles_active\.avg\.pct_of_peak_sustained_active$,regex:sm__inst_executed_pipe_tensor.*\.sum$,regex:smsp__sass_inst_executed_op_local_(ld|st)\.sum$,regex:smsp__warp_issue_stalled_(barrier|long_scoreboard|wait|math_pipe_throttle|mio_throttle|short_scoreboard)_per_warp_active\.pct$,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum' \
          python3 scripts/ncu_targets.py $t 2>&1 | tee "$OUT/ncu_$t.log" | grep -E "gemm_sm90|w4a16|attn_|qkv_|Duration|Throughput|pct|sum|Stall|==ERR|==WARN" | head -40
      done ;;
    ncu-src=*)
      t=${step#ncu-src=}
      timeout 200 ncu --clock-control none --launch-skip 2 --launch-count 1 --kernel-name regex:'gemm_sm90|w4a16|attn_dkdv|attn_dq|attn_fwd|qkv_' \
        --section SourceCounters --section WarpStateStats --page source --print-source sass --csv \
        python3 scripts/ncu_targets.py $t > "$OUT/ncu_src_$t.csv" 2> "$OUT/ncu_src_$t.err"
      echo "ncu-src rc=$? lines=$(wc -l < "$OUT/ncu_src_$t.csv")"; tail -3 "$OUT/ncu_src_$t.err" ;;
    py=*)
      script=${step#py=}; script=${script//+/ }; name=$(basename "${script%% *}" .py)
      timeout ${PY_TIMEOUT:-300} python3 $script 2>&1 | tee -a "$OUT/$name.log" | tail -${PY_TAIL:-60} ;;
    keep=*)
      gl=${step#keep=}; for g in ${gl//,/ }; do cp benchmarks/results/$g "$OUT/" 2>/dev/null || echo "keep: no $g"; done ;;
    decode-sweep)
      timeout 200 python3 scripts/decode_sweep.py 2>&1 | tee "$OUT/decode_sweep.log" | tail -12 ;;
    hopper)
      KAIODSL_BACKEND=cuda timeout 120 python3 examples/hopper_gemm.py 2>&1 | tee "$OUT/hopper_gemm.log" | tail -10
      for tool in memcheck racecheck; do
        KAIODSL_BACKEND=cuda timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 python3 examples/hopper_gemm.py 2>&1 \
          | tee "$OUT/hopper_sanitize_$tool.log" | tail -4
      done ;;
  esac
done
if [ -f "$OUT/pytest_gpu.log" ]; then
  echo "=== GPU test summary"; grep -E "^(FAILED|ERROR)|[0-9]+ (passed|failed)" "$OUT/pytest_gpu.log" | tail -30
fi
exit $rc
