#!/usr/bin/env bash
# The last step of the shipped weights: digitcloud-resnet34-v3 is v2 fine-tuned for 4 epochs on a CPU.
# v2 itself came from the GPU recipe (train/sweep.sh, variant B, then python -m train.recalibrate; see
# the README's model card); it is no longer bundled, so this takes it from git history, checks its
# sha256, and fine-tunes it with a small one-cycle learning rate and the weight EMA.
#
#   train/finetune_v3.sh DATA OUT [more python -m train arguments]
#
# ~60 minutes on this project's 2-core CPU (2 threads). Extra arguments go last and win, e.g.
#   train/finetune_v3.sh DATA /tmp/smoke --limit 300 --val-size 100 --epochs 1   # a smoke run
set -euo pipefail
DATA=${1:?usage: train/finetune_v3.sh DATA OUT [python -m train arguments]}
OUT=${2:?usage: train/finetune_v3.sh DATA OUT [python -m train arguments]}
shift 2
V2_COMMIT=eb606f4
V2_SHA256=6bab65baae9e3fbd199faa47f86f9767ccfa1a574ba4d50b0f0cb4ad884dcf4c

if ! git cat-file -e "$V2_COMMIT^{commit}" 2>/dev/null; then
  echo "finetune_v3.sh: v2's weights come from git history (commit $V2_COMMIT), which this checkout" \
    "lacks: run 'git fetch --unshallow' (a --depth clone) or use a full git clone" >&2
  exit 2
fi
mkdir -p "$OUT"
git show "$V2_COMMIT:digitcloud/weights/digitcloud-resnet34-v2.safetensors" > "$OUT/digitcloud-resnet34-v2.safetensors"
echo "$V2_SHA256  $OUT/digitcloud-resnet34-v2.safetensors" | sha256sum --check --quiet
"${PYTHON:-python3}" -m train --data "$DATA" --out "$OUT" --name digitcloud-resnet34-v3 \
  --checkpoint-dir "$OUT/checkpoints" --init "$OUT/digitcloud-resnet34-v2.safetensors" \
  --teachers 0 --epochs 4 --max-lr 0.01 --threads 2 "$@"
