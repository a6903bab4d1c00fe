#!/usr/bin/env bash
# The last step of the shipped weights: digitcloud-resnet34-v6 is v3 fine-tuned for 4 epochs on a CPU
# with a thicker-pen augmentation (--thicker-pen 3: strokes up to 3 px wider, markers). v3 came from
# train/finetune_v3.sh (v2 fine-tuned); it is no longer bundled, so this takes it from git history,
# checks its sha256, and fine-tunes it with v3's own settings plus the wider pen.
#
#   train/finetune_v6.sh DATA OUT [more python -m train arguments]
#
# About half an hour on this project's 2-core CPU (2 threads); run twice, it wrote the same file.
# Extra arguments go last and win, e.g.
#   train/finetune_v6.sh DATA /tmp/smoke --limit 300 --val-size 100 --epochs 1   # a smoke run
set -euo pipefail
DATA=${1:?usage: train/finetune_v6.sh DATA OUT [python -m train arguments]}
OUT=${2:?usage: train/finetune_v6.sh DATA OUT [python -m train arguments]}
shift 2
"$(dirname "$0")/weights_from_git.sh" e8e04ce digitcloud-resnet34-v3 9780b54579beae5cc31801e70f8981ea141c3faa2fd649b060388515c30a1b95 "$OUT"
"${PYTHON:-python3}" -m train --data "$DATA" --out "$OUT" --name digitcloud-resnet34-v6 \
  --checkpoint-dir "$OUT/checkpoints" --init "$OUT/digitcloud-resnet34-v3.safetensors" \
  --teachers 0 --epochs 4 --max-lr 0.01 --threads 2 --thicker-pen 3 "$@"
