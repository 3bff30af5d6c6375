#!/usr/bin/env bash
# The GPU configuration of the benchmark suite, in one call sized for a lent GPU machine (see
# DEVELOPERS.md: about 15 minutes of device time per session, 10 per command).
#
#   OUT=/somewhere bash benchmarks/gpu_suite.sh          # on the GPU machine, repository root
#
# - torchsde comes from ../shared/wheels (the GPU image lacks it), installed with --no-deps
#   into $DEPS; odenets runs from the working tree (PYTHONPATH), nothing else is installed.
# - Fashion-MNIST comes from ../shared/datasets ($ODENETS_DATA); nothing is downloaded.
# - Each benchmark runs under a soft budget (it skips what it predicts will not fit) and a hard
#   time limit, and rewrites its JSON/markdown in $OUT after every setting or training run
#   ("partial": true until it finishes), so a limit hit keeps what was measured. Copy $OUT's
#   files to benchmarks/results/ and run `python benchmarks/report.py --readme` to update the README.
# - Expected wall time on one H100, estimated from aten-op counts per training step measured on
#   CPU (eager steps of these small nets are bound by kernel launches, ~15 us per op): setup
#   ~25 s; speed ~60 s for the eager settings and the memory sweep, then the compiled settings,
#   resnet56 bf16 first (~30-50 s of compilation per model), while the budget lasts; the training
#   comparison ~80-120 s per seed (16 models x 351 steps of 6-19 ms, plus ~1 s per run of
#   evaluation and BatchNorm recomputation), so 2-3 seeds. In all <= 25 + SPEED_S + COMPARE_S s
#   (535 s by default; each limit may overrun by 10 s before the kill).
# - Limits (seconds, override by environment): SPEED_S (hard; budget 30 s less), COMPARE_S
#   (hard; budget 20 s less: a seed starts only if the previous seed's time still fits).
#   DEVICE=cpu DATASET=synthetic with extra arguments in SPEED_ARGS / COMPARE_ARGS (appended, so
#   they override) is the CPU smoke test of this script (tests/test_benchmarks.py).
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
SHARED=${SHARED:-../shared}
DEPS=${DEPS:-/tmp/odenets-deps}
DEVICE=${DEVICE:-cuda}
DATASET=${DATASET:-fashion-mnist}
SPEED_S=${SPEED_S:-240}
COMPARE_S=${COMPARE_S:-270}
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}  # stock Debian has no `python`
mkdir -p "$OUT"

if ! "$PYTHON" -c "import torchsde" 2>/dev/null; then
    "$PYTHON" -m pip install --quiet --no-deps --target "$DEPS" "$SHARED"/wheels/*.whl
fi
export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ODENETS_DATA="${ODENETS_DATA:-$SHARED/datasets}"

if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
DEVICE=$DEVICE DATASET=$DATASET "$PYTHON" - <<'EOF' || exit 1
import os, torch, torchdiffeq, torchsde, odenets, odenets.data
device = torch.device(os.environ["DEVICE"])
if device.type == "cuda":
    assert torch.cuda.is_available(), "no CUDA device visible"
    print("torch", torch.__version__, "on", torch.cuda.get_device_name(device), "| odenets from", odenets.__file__)
    for name, without in (("torchvision", "the resnet50 group is skipped"),
                          ("matplotlib", "no plots (JSON and markdown are still written)")):
        try:
            print(name, __import__(name).__version__)
        except ImportError:
            print(f"{name} not importable: {without}")
odenets.data.load_dataset(os.environ["DATASET"], "test")   # fails early, naming the paths searched
EOF

part() {  # part LIMIT_SECONDS NAME COMMAND...: run one benchmark under its limit, keep going
    local limit=$1 name=$2; shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --kill-after=10 "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - start))s"
}

# 1. speed and memory: ResNet-56 hand-written/ours/LM/LMM3, resnet20 plain and with training
#    noise (Gaussian EM, stochastic depth, shake-shake: the noise group, 1x28x28), torchdiffeq
#    fixed grid, torchvision resnet50; eager (bf16, fp32), the memory sweep, then compiled;
#    achieved TFLOP/s (6 x MACs x img/s) against the data-sheet peak (issue 24, item 6: resnet20
#    fp32 and bf16 at batch 128 is the noise group's `resnet20` row).
# shellcheck disable=SC2086
part "$SPEED_S" speed "$PYTHON" benchmarks/speed.py --device "$DEVICE" --rounds 15 \
    --budget-s $((SPEED_S - 30)) --out-dir "$OUT" ${SPEED_ARGS:-}
# 2. every scheme at depth 20 and the ResNet vs LM-ResNet depth sweep (20..56), seeds 0,1,2
#    (seed-major), the whole Fashion-MNIST training set, 3 epochs (cosine). Batch 512 instead of
#    the full recipe's 128: eager training of these small nets is bound by kernel launches, so a
#    4x larger batch costs about the same per step and needs 4x fewer steps. lr stays 0.1: in
#    60-step CPU trials (cosine, no warm-up) lr 0.2 at batch 512 trained worse (resnet20 66% vs
#    76%, lmm4_resnet20 50% vs 76%). BatchNorm statistics from 16 x 512 = 8,192 images, as full.
# shellcheck disable=SC2086
part "$COMPARE_S" schemes "$PYTHON" benchmarks/compare_schemes.py --device "$DEVICE" --dataset "$DATASET" \
    --epochs 3 --schedule cosine --batch-size 512 --lr 0.1 --precise-bn 16 --sweep-depths 20,32,44,56 \
    --budget-s $((COMPARE_S - 20)) --name compare_schemes_gpu --out-dir "$OUT" ${COMPARE_ARGS:-}
ls -l "$OUT"
