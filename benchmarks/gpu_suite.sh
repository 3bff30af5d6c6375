#!/usr/bin/env bash
# The GPU configuration of the benchmark suite, in one call sized for a lent GPU machine (see
# DEVELOPERS.md: about 15 minutes of device time per session, 10 per command).
#
#   OUT=/somewhere bash benchmarks/gpu_suite.sh          # on the GPU machine, repository root
#
# - torchsde comes from ../shared/wheels (the GPU image lacks it), installed with --no-deps
#   into $DEPS; odenets runs from the working tree (PYTHONPATH), nothing else is installed.
# - Fashion-MNIST comes from ../shared/datasets ($ODENETS_DATA); nothing is downloaded.
# - Each benchmark runs under its own time limit and writes its JSON/markdown/plots to $OUT as
#   it finishes, so a limit hit by one part keeps the others' results. Copy $OUT's files to
#   benchmarks/results/ and run `python benchmarks/report.py` to update the README section.
# - Limits (seconds, override by environment): SPEED_S, SCHEMES_S, SWEEP_S.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results}
SHARED=${SHARED:-../shared}
DEPS=${DEPS:-/tmp/odenets-deps}
mkdir -p "$OUT"

if ! python -c "import torchsde" 2>/dev/null; then
    pip install --quiet --no-deps --target "$DEPS" "$SHARED"/wheels/*.whl
fi
export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export ODENETS_DATA="${ODENETS_DATA:-$SHARED/datasets}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python - <<'EOF' || exit 1
import torch, torchdiffeq, torchsde, odenets, odenets.data
assert torch.cuda.is_available(), "no CUDA device visible"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(), "| odenets from", odenets.__file__)
odenets.data.load_dataset("fashion-mnist", "test")   # fails early, naming the paths searched
EOF

part() {  # part LIMIT_SECONDS NAME COMMAND...: run one benchmark under its limit, keep going
    local limit=$1 name=$2; shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@"
    echo "== $name: exit $? after $((SECONDS - start))s"
}

# 1. speed and memory: ResNet-56 hand-written/ours/LM, torchdiffeq fixed grid, torchvision
#    resnet50; eager and compiled; fp32 and bf16; TFLOP/s against the device's peak.
part "${SPEED_S:-240}" speed python benchmarks/speed.py --device cuda --rounds 15 --out-dir "$OUT"
# 2. every scheme at depth 20, 3 seeds, whole Fashion-MNIST training set, 3 epochs (cosine).
part "${SCHEMES_S:-200}" schemes python benchmarks/compare_schemes.py --device cuda --epochs 3 \
    --schedule cosine --sweep-depths none --name compare_schemes_gpu_schemes --out-dir "$OUT"
# 3. ResNet vs LM-ResNet depth sweep, 3 seeds, same recipe.
part "${SWEEP_S:-150}" sweep python benchmarks/compare_schemes.py --device cuda --epochs 3 \
    --schedule cosine --schemes resnet,lm_resnet --sweep-depths 20,32,44,56 \
    --name compare_schemes_gpu_sweep --out-dir "$OUT"
ls -l "$OUT"
