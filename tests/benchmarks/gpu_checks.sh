#!/usr/bin/env bash
# Every check that needs a GPU, in one go (a lent GPU's time is short): the kernel and model tests
# compiled on CUDA, the op and layer benchmarks, and the training benchmark (safe vs optimized).
#
#   OUT=gpu_out bash tests/benchmarks/gpu_checks.sh [--extra name=path.py:function ...]
#
# Each step's full log goes to $OUT/<step>.log and its tail to stdout; a step that fails or runs
# past its limit does not stop the next. --extra is passed to bench_gat_gpu.py (another op to time
# beside the fused kernel, e.g. an earlier version of it). STEPS="tests training_full" runs only
# those steps (default: all, in the order below); PROFILE_DATES=N adds a torch.profiler table of an
# optimized run over N dates to the full-size training step.
set -u
OUT=${OUT:-gpu_checks_out}
mkdir -p "$OUT"
export KEDRO_DISABLE_TELEMETRY=true TRITON_INTERPRET=0 PYTHONUNBUFFERED=1
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736
PY=${PYTHON:-python3}

step() {
    local name=$1 limit=$2 start rc
    shift 2
    [[ " ${STEPS:-$name} " == *" $name "* ]] || return 0
    start=$(date +%s)
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    echo "=== $name: exit $rc after $(($(date +%s) - start)) s (limit $limit s)"
    tail -n "${TAIL:-30}" "$OUT/$name.log" | cut -c1-220
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

step tests 300 $PY -m pytest -q -p no:cacheprovider tests/kernels tests/model tests/training -k cuda
step gat_op 240 $PY tests/benchmarks/bench_gat_gpu.py --json "$OUT/gat_gpu.json" "$@"
TAIL=20 step gat_pytest_benchmark 180 $PY -m pytest -q -p no:cacheprovider tests/benchmarks/test_gat_benchmark.py \
    -m benchmark --benchmark-only --benchmark-json="$OUT/gat_benchmark.json" --benchmark-columns=min,median,max,rounds
TAIL=12 step training_small 180 $PY tests/benchmarks/bench_training.py --size small --dates 120 --repeats 2
TAIL=12 step training_full "${FULL_LIMIT:-330}" $PY tests/benchmarks/bench_training.py --size full --days 1450 --dates 1000 \
    --val-dates 0 --repeats 1 --graph-rebuild-every 10 --profile "${PROFILE_DATES:-0}"
