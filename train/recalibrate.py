"""python -m train.recalibrate --weights W.safetensors --sha256 HEX --data ../shared/data/mnist --out DIR --name NAME

Re-estimates the BatchNorm statistics of exported weights for the weights as they are, over the
un-augmented training digits (the step ``python -m train`` now ends with), then measures and writes
them like a training run: weights, metadata, confusion matrix and misclassified grid. The metadata
keeps the original run's recipe, history and training hardware, and records where the weights came
from. It exists because the first GPU run exported its weight average without this step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.recalibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", required=True, type=Path, help="exported weights; their <name>.json beside them")
    p.add_argument("--sha256", required=True, help="the weights' pinned sha256")
    p.add_argument("--data", required=True, type=Path, help="the data the weights were trained on")
    p.add_argument(
        "--extra-data", type=Path, action="append", default=[], metavar="PATH", help="as given to python -m train"
    )
    p.add_argument("--val-size", type=int, default=None, help="default: the run's, from its metadata")
    p.add_argument("--limit", type=int, default=None, help="as given to python -m train")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--name", required=True)
    args = p.parse_args(argv)

    import torch

    from digitcloud.model import load_model
    from train.data import concatenate, load, split
    from train.export import publish
    from train.recipe import recalibrate_batchnorm

    original = json.loads(args.weights.with_suffix(".json").read_text())
    data = load(args.data).subset(args.limit)
    if data.sha256() != original["data"]["sha256"]:
        print(f"error: {args.data} is not the data {args.weights.name} was trained on (--limit?)", file=sys.stderr)
        return 2
    extras = [load(path) for path in args.extra_data]
    recorded_extras = [extra["sha256"] for extra in original["data"].get("extra", [])]
    if [extra.sha256() for extra in extras] != recorded_extras:
        print(
            f"error: {args.weights.name} was trained with {len(recorded_extras)} --extra-data set(s); "
            f"give the same ones, in the same order (got {len(extras)}, or other digits)",
            file=sys.stderr,
        )
        return 2
    # The run's own split, so its validation digits never feed the statistics (a held-out run).
    recorded = original["data"].get("validation")
    val_size = args.val_size if args.val_size is not None else recorded
    if recorded is not None and val_size != recorded:
        print(
            f"error: --val-size {val_size}, but {args.weights.name} held out {recorded} validation digits",
            file=sys.stderr,
        )
        return 2
    train_set, val_set = split(data, val_size)
    held_out = original["data"].get("validation_held_out", True)
    if not held_out:  # trained with --final: on every digit
        train_set = data
    train_set = concatenate(train_set, *extras)
    net = load_model(path=args.weights, sha256=args.sha256)
    began = time.perf_counter()
    recalibrate_batchnorm(net, train_set.images)
    seconds = time.perf_counter() - began
    kept = {
        k: v for k, v in original.items() if k not in {"weights", "sha256", "created", "torch", "python", "validation"}
    }
    kept["batchnorm_recalibrated"] = {
        "from": {"weights": original["weights"], "sha256": original["sha256"], "validation": original["validation"]},
        "digits": len(train_set),
        "seconds": round(seconds, 1),
        "hardware": f"cpu x{torch.get_num_threads()} threads",
    }
    publish(net, val_set, held_out, args.out, args.name, kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
