#!/usr/bin/env bash
# The GPU session that picked and trained the shipped weights: three recipes side by side on one GPU,
# each trained on the first 50,000 MNIST train digits and validated on the last 10,000, then all three
# read the photo set (bench/photo_set.py). The best on validation is split into <16 MB parts for the
# trip back (the device tool returns files of at most 16 MB).
#
#   train/sweep.sh DATA OUT            # the real run (~5 min on an H200)
#   SMOKE=1 train/sweep.sh DATA OUT    # the same steps on 1,200 digits and 1 epoch: try it on a CPU first
#
#   A  the default recipe: 2 teachers (12 epochs), distilled student (30 epochs), EMA, photo augmentation
#   B  no teachers: the student on labels alone, otherwise as A
#   C  as B without the stroke-width and blur augmentation
set -u
DATA=$1
OUT=$2
PY=${PYTHON:-python3}
DEADLINE=${DEADLINE:-420}  # seconds for training; runs still going then are stopped
PHOTOS=${PHOTOS:-5000}
EXTRA=()
if [[ -n ${SMOKE:-} ]]; then
  EXTRA=(--limit 1200 --epochs 1 --teacher-epochs 1 --batch-size 64 --device cpu)
  PHOTOS=200
fi
mkdir -p "$OUT" /tmp/sweep
export PYTHONUNBUFFERED=1
start=$SECONDS

run() {  # name, extra args...
  local name=$1
  shift
  # exec: the background job IS python, so the deadline's kill stops the training, not just a subshell
  exec "$PY" -m train --data "$DATA" --out /tmp/sweep/"$name" --name "$name" \
    --checkpoint-dir /tmp/sweep/ckpt-"$name" "$@" "${EXTRA[@]}" >/tmp/sweep/"$name".log 2>&1
}
run A &
run B --teachers 0 &
run C --teachers 0 --no-photo-augmentation &

while [[ -n $(jobs -r) ]] && ((SECONDS - start < DEADLINE)); do sleep 5; done
for pid in $(jobs -rp); do echo "deadline: stopping $pid"; kill "$pid"; done
wait
echo "training took $((SECONDS - start)) s"

weights=()
for name in A B C; do
  meta=/tmp/sweep/$name/$name.json
  [[ -f $meta ]] && weights+=(--weights /tmp/sweep/"$name"/"$name".safetensors "$("$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))['sha256'])" "$meta")")
done
if ((${#weights[@]})); then
  "$PY" bench/photo_set.py --data "$DATA" --n "$PHOTOS" "${weights[@]}" --json /tmp/sweep/photo_set.json 2>&1 | tee /tmp/sweep/photo_set.log
fi
echo "photo set done at $((SECONDS - start)) s"

"$PY" - "$OUT" <<'PY'
import json, pathlib, shutil, subprocess, sys
out, sweep = pathlib.Path(sys.argv[1]), pathlib.Path("/tmp/sweep")
summary = {"runs": {}}
for name in "ABC":
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
    print("best on validation:", best, {n: r["validation"]["accuracy"] for n, r in summary["runs"].items()})
(out / "summary.json").write_text(json.dumps(summary, indent=1))
logs = "".join(f"===== {p.name}\n" + "\n".join(p.read_text().splitlines()[-400:]) + "\n" for p in sorted(sweep.glob("*.log")))
(out / "logs.txt").write_text(logs)
PY
echo "all done at $((SECONDS - start)) s"
