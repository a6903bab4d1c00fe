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
"$(dirname "$0")/weights_from_git.sh" eb606f4 digitcloud-resnet34-v2 6bab65baae9e3fbd199faa47f86f9767ccfa1a574ba4d50b0f0cb4ad884dcf4c "$OUT"
"${PYTHON:-python3}" -m train --data "$DATA" --out "$OUT" --name digitcloud-resnet34-v3 \
  --checkpoint-dir "$OUT/checkpoints" --init "$OUT/digitcloud-resnet34-v2.safetensors" \
  --teachers 0 --epochs 4 --max-lr 0.01 --threads 2 "$@"
