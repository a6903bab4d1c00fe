#!/usr/bin/env bash
# Write a weights file that is no longer bundled from the git commit that shipped it, and check its
# sha256: how train/finetune_v3.sh and train/finetune_v6.sh get the model they start from.
#
#   train/weights_from_git.sh COMMIT NAME SHA256 OUT   # writes OUT/NAME.safetensors
set -euo pipefail
COMMIT=${1:?usage: train/weights_from_git.sh COMMIT NAME SHA256 OUT}
NAME=${2:?usage: train/weights_from_git.sh COMMIT NAME SHA256 OUT}
SHA256=${3:?usage: train/weights_from_git.sh COMMIT NAME SHA256 OUT}
OUT=${4:?usage: train/weights_from_git.sh COMMIT NAME SHA256 OUT}

if ! git cat-file -e "$COMMIT^{commit}" 2>/dev/null; then
  echo "$NAME's weights come from git history (commit $COMMIT), which this checkout lacks:" \
    "run 'git fetch --unshallow' (a --depth clone) or use a full git clone" >&2
  exit 2
fi
mkdir -p "$OUT"
git show "$COMMIT:digitcloud/weights/$NAME.safetensors" > "$OUT/$NAME.safetensors"
echo "$SHA256  $OUT/$NAME.safetensors" | sha256sum --check --quiet
