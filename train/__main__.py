"""python -m train --data ../shared/data/mnist --out digitcloud/weights/

Trains the digit model, then writes <name>.safetensors (fp16), <name>.json (recipe, data hash,
validation accuracy per class), <name>.confusion.png and <name>.misclassified.png into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from train.data import load, split
from train.recipe import Recipe


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Recipe()
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="MNIST IDX folder, Kaggle train.csv, or a folder with 0/ … 9/ subfolders of images",
    )
    p.add_argument("--out", required=True, type=Path, help="where the weights, metadata and pictures go")
    p.add_argument("--name", default="digitcloud-resnet34", help="file name stem of the outputs")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--max-lr", type=float, default=defaults.max_lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="digits held out at the end of the data (default 10,000, or 1/6 if smaller)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N digits (smoke runs)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="per-epoch checkpoints (default runs/<name>/); --resume continues from there",
    )
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument(
        "--pretrained",
        action="store_true",
        help="start from torchvision's ImageNet weights (downloads them: needs the internet)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    from digitcloud.model import predict_probabilities
    from train.export import export
    from train.recipe import train
    from train.report import confusion_matrix, draw_confusion_matrix, draw_misclassified

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    recipe = Recipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_lr=args.max_lr,
        seed=args.seed,
        pretrained=args.pretrained,
    )
    data = load(args.data).subset(args.limit)
    train_set, val_set = split(data, args.val_size)
    print(f"data: {data.source}, {len(train_set)} train / {len(val_set)} validation, device {device}")

    began = time.perf_counter()
    try:
        net, history = train(
            recipe, train_set, val_set, args.checkpoint_dir or Path("runs") / args.name, device, args.resume
        )
    except OSError as exc:
        if args.pretrained:
            print(f"error: could not download the ImageNet weights ({exc}); are you online?", file=sys.stderr)
            return 2
        raise
    seconds = time.perf_counter() - began

    probs = predict_probabilities(net.eval(), val_set.images, batch_size=1024)
    predicted = probs.argmax(1)
    matrix = confusion_matrix(val_set.labels, predicted)
    per_class = {str(d): float(matrix[d, d] / max(1, matrix[d].sum())) for d in range(10)}
    accuracy = float((predicted == val_set.labels).mean())
    hardware = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    )
    path, sha = export(
        net,
        args.out,
        args.name,
        {
            "architecture": "torchvision resnet34, 1-channel 7x7/2 stem + maxpool, 10 classes",
            "recipe": dataclasses.asdict(recipe),
            "data": {
                "source": data.source,
                "sha256": data.sha256(),
                "train": len(train_set),
                "validation": len(val_set),
            },
            "validation": {
                "accuracy": accuracy,
                "errors": int((predicted != val_set.labels).sum()),
                "per_class_accuracy": per_class,
            },
            "history": history,
            "training": {"seconds": round(seconds, 1), "hardware": hardware},
        },
    )
    draw_confusion_matrix(
        matrix,
        args.out / f"{args.name}.confusion.png",
        f"{args.name}: validation {accuracy:.2%} on {len(val_set)} digits",
    )
    drawn = draw_misclassified(val_set.images, val_set.labels, predicted, args.out / f"{args.name}.misclassified.png")
    print(f"validation accuracy {accuracy:.4%} ({drawn} misclassified drawn)")
    print(f"wrote {path} sha256 {sha}")
    print(f'to ship it, pin it in digitcloud/model.py: Weights(filename="{path.name}", sha256="{sha}")')
    return 0


if __name__ == "__main__":
    sys.exit(main())
