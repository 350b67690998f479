#!/usr/bin/env bash
# One prepared check on a GPU machine (issue #13): first the GPU tests (the model in bf16, padded
# and unpadded; the pretrain stage's bf16 training unpadded against padded; a kill and a resume
# on the GPU), which check the code as it is now; then the chain on the GPU (ingest → … → bf16
# pretraining of BERT-small → fine-tuning on every task at two learning rates × three seeds,
# learning rate chosen on dev, evaluated as the evaluate stage does beside the majority and
# bag-of-words baselines; then the stage padded against unpadded with each unpadded kernel), a
# torch.compile comparison at BERT-base, length 128, the unpadded model with the padded-sdpa
# kernel (BERT-base, 128), and last, if time is left, the full model benchmark (BERT-base and
# BERT-large at sequence length 128 and 512, bf16: bertforge padded and unpadded against
# transformers; measured on the H200 before, docs/model.md).
#
#   OUT=/some/empty/dir bash benchmarks/gpu_check.sh        # from the repository root
#   STEPS="wheels environment pytest-gpu" OUT=... bash benchmarks/gpu_check.sh   # some steps only
#
# STEPS (default: all) names the steps to run, in the script's order; PIPELINE_ARGS replaces the
# chain's arguments on a GPU (e.g. "--steps 1000 --lrs 1e-3 --seeds 0 1 2 --workers 12
# --compare-unpad 200" for a shorter run, the benchmarks' examples included).
# The machine needs Python 3.12 with torch (CUDA), transformers, tokenizers, pyarrow, pandas,
# numpy, pytest; what bertforge needs beyond that comes as wheels in .whl/ (built beforehand,
# see docs/model.md) and is installed into /tmp/site: nothing is downloaded. Every step runs
# under `timeout`, within one overall deadline (BUDGET_S, default 510 s: the whole script within
# 9 minutes on one H100), and a failed step does not stop the next one; the steps go in order of
# importance. Writes at most 7
# files under $OUT: summary.md (environment, one line per step, test summary, the evaluation
# report, benchmark tables), steps.log (every step's output), gpu_pipeline.json
# (benchmarks/gpu_pipeline.py: the chain through bf16 pretraining and fine-tuning on the GPU, and
# the stage padded against unpadded; it is rewritten after each of its steps) and its report
# gpu_pipeline.md (reports/eval.md's form), bench_model.json, bench_unpad.json and
# bench_compile.json. DEVICE=cpu rehearses the plumbing on a CPU machine with tiny runs
# (with BUDGET_S=1200: each step's limit tripled, SCALE=3; 2 busy cores take ~9 minutes; the
# tiny pipeline's examples go to $OUT/examples, not over the working copy's data/examples).
set -u -o pipefail

OUT=${OUT:?set OUT to the output directory}
PYTHON=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
WHEEL_DIR=${WHEEL_DIR:-.whl}
BUDGET_S=${BUDGET_S:-510}
SCALE=${SCALE:-$([ "$DEVICE" = cuda ] && echo 1 || echo 3)} # step limits × this (CPU: slower)
DEADLINE=$(($(date +%s) + BUDGET_S))
SUMMARY=$OUT/summary.md
LOG=$OUT/steps.log
mkdir -p "$OUT"
: >"$LOG"
export PYTHONPATH=/tmp/site:$PWD/src
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1 TOKENIZERS_PARALLELISM=false
export PYTHON WHEEL_DIR

# run NAME SECONDS COMMAND...: the command under `timeout` (cut to what is left of the budget),
# its output appended to steps.log, its exit status and time to summary.md. 124: timed out.
run() {
    local name=$1 want=$(($2 * SCALE)) left status start
    shift 2
    if [ -n "${STEPS:-}" ] && [[ " $STEPS " != *" $name "* ]]; then
        echo "| $name | skipped | 0 s | not in STEPS |" >>"$SUMMARY"
        return
    fi
    left=$((DEADLINE - $(date +%s)))
    if ((left < 20)); then
        echo "| $name | skipped | 0 s | budget spent |" >>"$SUMMARY"
        return
    fi
    ((want > left)) && want=$left
    echo ">>>>> $name (limit ${want} s): $*" >>"$LOG"
    start=$(date +%s)
    timeout --kill-after=10 "$want" "$@" >>"$LOG" 2>&1
    status=$?
    echo "| $name | $status | $(($(date +%s) - start)) s | ${want} s |" >>"$SUMMARY"
}

install_wheels() {
    local wheels=("$WHEEL_DIR"/*.whl)
    if [ ! -e "${wheels[0]}" ]; then
        echo "no wheels in $WHEEL_DIR"
        return 0
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site "${wheels[@]}"
}

environment() {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
        || echo "no nvidia-smi"
    "$PYTHON" - <<'EOF'
import platform, torch, transformers
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}),"
      f" transformers {transformers.__version__}")
print(f"device: {torch.cuda.get_device_name() if cuda else 'no CUDA device'}")
for name in ("deepspeed", "flash_attn", "pandera", "pydantic", "hjson", "zstandard", "sentencex"):
    try:
        module = __import__(name)
        print(f"{name} {getattr(module, '__version__', '?')} from {module.__file__}")
    except Exception as error:
        print(f"{name}: not importable ({type(error).__name__}: {error})")
EOF
}

export -f install_wheels environment

section() { # the output of step $1 in steps.log
    sed -n "/^>>>>> $1 /,/^>>>>> /p" "$LOG" | grep -v '^>>>>> '
}

# the pipeline's examples, which the benchmarks then read: data/examples of this (fresh) copy
# on the GPU machine; under $OUT in a CPU rehearsal, never over a working copy's real examples
EXAMPLES=${EXAMPLES:-$([ "$DEVICE" = cuda ] && echo "$PWD/data/examples" || echo "$OUT/examples")}
if [ "$DEVICE" = cuda ]; then
    # shellcheck disable=SC2206 # PIPELINE_ARGS: words, on purpose
    PIPELINE=(${PIPELINE_ARGS:---steps 2000 --lrs 1e-3 1e-4 --seeds 0 1 2 --workers 12 --compare-unpad 200})
    BENCH=(--device cuda --config base large --seq-len 128 512)
    UNPAD=(--device cuda --config base --seq-len 128 --attention padded-sdpa --no-memory)
    COMPILE=(--device cuda --config base --seq-len 128 --compile --warmup 4 --no-memory)
else
    PIPELINE=(--tiny --tasks supersense --lrs 1e-3 1e-4 --seeds 0 1 --workers 2 --compare-unpad 4)
    TINY=(--device cpu --config small --batch-size 4 --steps 1 --warmup 1 --repeats 1 --no-memory)
    BENCH=("${TINY[@]}" --unpad)
    UNPAD=("${TINY[@]}" --unpad --attention padded-sdpa)
    COMPILE=("${TINY[@]}" --compile)
fi

{
    echo "# GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "| step | exit | took | limit |"
    echo "|---|---:|---:|---:|"
} >"$SUMMARY"
run wheels 60 bash -c install_wheels
run environment 30 bash -c environment
run pytest-gpu 240 "$PYTHON" -m pytest -m gpu tests/gpu -q -ra -p no:cacheprovider
# the chain (ingest → … → pretrain in bf16 → fine-tuning on the GPU, every task at two learning
# rates × three seeds in 12 processes sharing the GPU, evaluated as the evaluate stage does → the
# stage padded against unpadded with each kernel); its examples feed the benchmarks
run pipeline 360 "$PYTHON" benchmarks/gpu_pipeline.py "${PIPELINE[@]}" \
    --examples-out "$EXAMPLES" --out "$OUT/gpu_pipeline.json"
BENCH+=(--examples "$EXAMPLES/train")
UNPAD+=(--examples "$EXAMPLES/train")
COMPILE+=(--examples "$EXAMPLES/train")
run bench-compile 200 "$PYTHON" benchmarks/bench_model.py "${COMPILE[@]}" --out "$OUT/bench_compile.json"
# the unpadded model again, attention through padded-sdpa: the kernel's share of its time
run bench-unpad 60 "$PYTHON" benchmarks/bench_model.py "${UNPAD[@]}" --out "$OUT/bench_unpad.json"
run bench-model 150 "$PYTHON" benchmarks/bench_model.py "${BENCH[@]}" --out "$OUT/bench_model.json"

{
    echo
    echo "## Environment"
    echo
    section environment | sed 's/^/    /'
    echo
    echo "## GPU tests"
    echo
    section pytest-gpu \
        | grep -E '^(FAILED|ERROR|SKIPPED) |(passed|failed|skipped|error).* in [0-9.]+s' \
        | tail -40 | sed 's/^/    /'
    if [ -f "$OUT/gpu_pipeline.md" ]; then
        echo
        sed 's/^#/##/' "$OUT/gpu_pipeline.md"
    fi
    if [ -f "$OUT/gpu_pipeline.json" ]; then
        echo
        echo "## Pipeline on this device (benchmarks/gpu_pipeline.py)"
        echo
        sed 's/^/    /' "$OUT/gpu_pipeline.json"
    fi
    for name in bench_unpad bench_compile bench_model; do
        if [ -f "$OUT/$name.md" ]; then
            echo
            echo "## $name"
            echo
            cat "$OUT/$name.md"
            rm -f "$OUT/$name.md"
        fi
    done
} >>"$SUMMARY"
echo "wrote $SUMMARY"
