#!/usr/bin/env bash
# A GPU session: training recipes side by side on one GPU, each trained on the first 50,000 MNIST
# train digits and validated on the last 10,000, then compared with the shipped weights on the same
# photos (bench/photo_set.py) and unseen handwriting (bench/unseen_digits.py); bench/precision.py
# measures the shipped weights' bf16 on this GPU. The best on validation is split into <16 MB parts
# for the trip back (the device tool returns files of at most 16 MB, 8 files in all).
#
#   train/sweep.sh DATA OUT                  # the next step for the model (VARIANTS="D E"; ~7 min)
#   VARIANTS="A B C" train/sweep.sh DATA OUT # the session that gave v2 (B), 2026-11-27 (~5 min, H200)
#   SMOKE=1 train/sweep.sh DATA OUT          # the same steps on 1,200 digits and 1 epoch: try it on a CPU first
#
#   A  the default recipe: 2 teachers (12 epochs), distilled student (30 epochs), EMA, photo augmentation
#   B  no teachers: the student on labels alone, otherwise as A (v2)
#   C  as B without the stroke-width and blur augmentation
#   D  as A with pens up to 3 px thicker (v6's fine-tune setting), from scratch: the candidate for v7
#   E  as D without teachers: what the distillation is worth in D
#   F  as D with small-CNN teachers (train/small_cnn.py, 30 epochs): on the CPU they helped neither a
#      fine-tune of v6 nor a student from scratch (F 39 wrong, E 40; README, model card); not in the default,
#      whose ~7 min it may push past DEADLINE (VARIANTS="D E F" to add it)
#
# On the device machine (../shared does not travel; data/ is git-ignored and carried):
#   here:  mkdir -p data && cp -r ../shared/data/mnist data/
#   run:   PYTHON=python3 bash train/sweep.sh data/mnist $OUT/sweep   (carry: ["data"], timeout_s 600)
set -u
DATA=$1
OUT=$2
PY=${PYTHON:-python3}
DEADLINE=${DEADLINE:-450} # seconds for training; runs still going then are stopped
PHOTOS=${PHOTOS:-3000}    # the photo set's size in the README's table (seed 0)
UNSEEN=${UNSEEN:-2000}
PRECISION=${PRECISION:-10000}
read -r -a VARIANTS <<<"${VARIANTS:-D E}"
declare -A RECIPES=(
  [A]=""
  [B]="--teachers 0"
  [C]="--teachers 0 --no-photo-augmentation"
  [D]="--thicker-pen 3"
  [E]="--teachers 0 --thicker-pen 3"
  [F]="--thicker-pen 3 --teacher-architecture small-cnn --teacher-epochs 30"
)
EXTRA=()
if [[ -n ${SMOKE:-} ]]; then
  EXTRA=(--limit 1200 --epochs 1 --teacher-epochs 1 --batch-size 64 --device cpu)
  PHOTOS=200 UNSEEN=200 PRECISION=500
fi
for name in "${VARIANTS[@]}"; do
  [[ -v RECIPES[$name] ]] || { echo "unknown variant $name (known: ${!RECIPES[*]})" >&2; exit 2; }
done
mkdir -p "$OUT" /tmp/sweep
export PYTHONUNBUFFERED=1
start=$SECONDS

run() { # name: trains that variant; called in the background
  local name=$1
  local -a recipe
  read -r -a recipe <<<"${RECIPES[$name]}"
  # exec: the background job IS python, so the deadline's kill stops the training, not just a subshell
  exec "$PY" -m train --data "$DATA" --out /tmp/sweep/"$name" --name "$name" \
    --checkpoint-dir /tmp/sweep/ckpt-"$name" "${recipe[@]}" "${EXTRA[@]}" >/tmp/sweep/"$name".log 2>&1
}
for name in "${VARIANTS[@]}"; do run "$name" & done

while [[ -n $(jobs -r) ]] && ((SECONDS - start < DEADLINE)); do sleep 5; done
for pid in $(jobs -rp); do echo "deadline: stopping $pid"; kill "$pid"; done
wait
echo "training took $((SECONDS - start)) s"

# The shipped weights first: the same photos and digits read by each file, side by side.
shipped=$("$PY" -c "from digitcloud.model import WEIGHTS as w; print(w.path, w.sha256)")
read -r -a weights <<<"--weights $shipped"
for name in "${VARIANTS[@]}"; do
  meta=/tmp/sweep/$name/$name.json
  [[ -f $meta ]] && weights+=(--weights /tmp/sweep/"$name"/"$name".safetensors "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['sha256'])" "$meta")")
done
if ((${#weights[@]} > 3)); then # a variant's file beside the shipped one's --weights FILE SHA256
  "$PY" bench/photo_set.py --data "$DATA" --n "$PHOTOS" "${weights[@]}" --json /tmp/sweep/photo_set.json >/tmp/sweep/photo_set.log 2>&1
  echo "photo set done at $((SECONDS - start)) s"
  "$PY" bench/unseen_digits.py --n "$UNSEEN" "${weights[@]}" >/tmp/sweep/unseen_digits.log 2>&1
  echo "unseen digits done at $((SECONDS - start)) s"
fi
"$PY" bench/precision.py --data "$DATA" --n "$PRECISION" >/tmp/sweep/precision.log 2>&1
echo "precision done at $((SECONDS - start)) s"

"$PY" - "$OUT" "${VARIANTS[@]}" <<'PY'
import json, pathlib, shutil, subprocess, sys
from digitcloud.model import WEIGHTS
out, sweep, names = pathlib.Path(sys.argv[1]), pathlib.Path("/tmp/sweep"), sys.argv[2:]
summary = {"runs": {}, "shipped": {"weights": WEIGHTS.filename, "validation": WEIGHTS.metadata()["validation"]}}
for name in names:
    meta = sweep / name / f"{name}.json"
    if meta.exists():
        summary["runs"][name] = json.loads(meta.read_text())
photo = sweep / "photo_set.json"
summary["photo_set"] = json.loads(photo.read_text()) if photo.exists() else None
if summary["runs"]:
    best = max(summary["runs"], key=lambda n: summary["runs"][n]["validation"]["accuracy"])
    summary["best"] = best
    for suffix in ("confusion.png", "misclassified.png"):
        shutil.copy(sweep / best / f"{best}.{suffix}", out / f"{best}.{suffix}")
    subprocess.run(["split", "-b", "15000000", "-d", str(sweep / best / f"{best}.safetensors"), str(out / f"{best}.part")], check=True)
    errors = {n: r["validation"]["errors"] for n, r in summary["runs"].items()}
    print(f"validation errors: {errors}, shipped {summary['shipped']['validation']['errors']}; best {best}")
(out / "summary.json").write_text(json.dumps(summary, indent=1))
logs = "".join(f"===== {p.name}\n" + "\n".join(p.read_text().splitlines()[-400:]) + "\n" for p in sorted(sweep.glob("*.log")))
(out / "logs.txt").write_text(logs)
PY
echo "all done at $((SECONDS - start)) s"
