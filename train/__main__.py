"""python -m train --data ../shared/data/mnist --out runs/mine [--teachers 0]

Trains the digit model, then writes <name>.safetensors (fp16), <name>.json (recipe, data hash,
validation accuracy per class), <name>.confusion.png and <name>.misclassified.png into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from train.augment import Augmentation
from train.data import concatenate, load, split
from train.recipe import TEACHER_ARCHITECTURES, Recipe

ARCHITECTURE = "torchvision resnet34, 1-channel 7x7/2 stem + maxpool, 10 classes"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    defaults = Recipe()
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data",
        required=True,
        type=Path,
        help="MNIST IDX folder, Kaggle train.csv, or a folder with 0/ … 9/ subfolders of images",
    )
    p.add_argument(
        "--extra-data",
        type=Path,
        action="append",
        default=[],
        metavar="PATH",
        help="more training digits in any --data format (e.g. a folder of your own handwriting, 0/ … 9/), "
        "added to the training split only: validation stays --data's held-out tail; repeatable",
    )
    p.add_argument("--out", required=True, type=Path, help="where the weights, metadata and pictures go")
    p.add_argument("--name", default="digitcloud-resnet34", help="file name stem of the outputs")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--max-lr", type=float, default=defaults.max_lr)
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument(
        "--teachers",
        type=int,
        default=defaults.teachers,
        help="teachers to distil from (0: train on the labels alone, the CPU-friendly choice)",
    )
    p.add_argument("--teacher-epochs", type=int, default=defaults.teacher_epochs)
    p.add_argument(
        "--teacher-architecture",
        default=defaults.teacher_architecture,
        choices=sorted(TEACHER_ARCHITECTURES),
        help="what the trained teachers are: resnet34 without its max-pool (the GPU recipe), or "
        "small-cnn, 0.33 M parameters, ~30 s an epoch on 2 CPU cores (train/small_cnn.py)",
    )
    p.add_argument(
        "--teacher-max-lr",
        type=float,
        default=None,
        help="the teachers' peak learning rate (default: --max-lr); teachers always train from scratch, "
        "so a fine-tune (--init, small --max-lr) can still give them 0.1",
    )
    p.add_argument(
        "--teacher-weights",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="also distil from these exported weights (the shipped architecture, e.g. the shipped "
        "digitcloud/weights/*.safetensors: born-again distillation); loaded, not trained; repeatable",
    )
    p.add_argument("--ema-decay", type=float, default=defaults.ema_decay, help="0 turns the weight EMA off")
    p.add_argument(
        "--no-photo-augmentation",
        action="store_true",
        help="augment geometry only: no stroke-width or blur changes",
    )
    p.add_argument(
        "--thicker-pen",
        type=int,
        default=Augmentation.thicker_px,
        metavar="PX",
        help="the most the stroke-width augmentation widens a pen, in pixels across the stroke at 28x28 "
        f"(default {Augmentation.thicker_px}; 2 covers markers about twice MNIST's pen)",
    )
    p.add_argument(
        "--rotate",
        type=float,
        default=Augmentation.rotate_deg,
        metavar="DEG",
        help=f"turn each digit by up to DEG degrees either way (default {Augmentation.rotate_deg:g})",
    )
    p.add_argument(
        "--elastic",
        type=float,
        default=0.0,
        metavar="P",
        help="warp a share P of the digits elastically (0..1; default 0: off)",
    )
    p.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="digits held out at the end of the data (default 10,000, or 1/6 if smaller)",
    )
    p.add_argument(
        "--final",
        action="store_true",
        help="train on all the digits, the validation ones included: the final model, once the recipe "
        "was chosen on held-out digits (the validation numbers then read digits it learnt from)",
    )
    p.add_argument("--limit", type=int, default=None, help="use only the first N digits (smoke runs)")
    p.add_argument("--device", default=None, choices=("cuda", "cpu"), help="default: cuda when available")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="per-epoch checkpoints (default runs/<name>/); --resume continues from there",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint; teachers trained in the same --checkpoint-dir are reused "
        "when only the student's settings changed",
    )
    start = p.add_mutually_exclusive_group()
    start.add_argument(
        "--pretrained",
        action="store_true",
        help="start from torchvision's ImageNet weights (downloads them: needs the internet)",
    )
    start.add_argument(
        "--init",
        type=Path,
        default=None,
        help="fine-tune: start from exported weights (a .safetensors written by this command, "
        "e.g. the shipped digitcloud/weights/*.safetensors); use a smaller --max-lr and fewer --epochs",
    )
    args = p.parse_args(argv)
    for flag in ("limit", "threads", "epochs", "batch_size", "teacher_epochs", "val_size"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1; got {value}")
    if args.teachers < 0:
        p.error(f"--teachers must be 0 or more; got {args.teachers}")
    for flag in ("max_lr", "teacher_max_lr"):
        value = getattr(args, flag)
        if value is not None and not value > 0:  # `not >`: NaN is refused too
            p.error(f"--{flag.replace('_', '-')} must be above 0; got {value}")
    if not 0 <= args.ema_decay < 1:  # 1 would never move the average off the first step's weights
        p.error(f"--ema-decay must be from 0 (off) to below 1; got {args.ema_decay}")
    if args.thicker_pen < 1:
        p.error(f"--thicker-pen must be at least 1 pixel; got {args.thicker_pen}")
    if not 0 <= args.elastic <= 1:
        p.error(f"--elastic is a share of the digits, from 0 to 1; got {args.elastic}")
    if not 0 <= args.rotate <= 180:  # NaN is refused too
        p.error(f"--rotate must be from 0 to 180 degrees; got {args.rotate}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for flag, path in [("--init", args.init), *(("--teacher-weights", t) for t in args.teacher_weights)]:
        if path is not None and not path.is_file():
            print(f"error: {flag} {str(path)!r} is not a file", file=sys.stderr)
            return 2
    import torch

    from digitcloud.model import sha256_of
    from train.export import publish
    from train.recipe import CheckpointMismatchError, PretrainedUnavailableError, train

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA GPU here", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    augmentation = Augmentation(rotate_deg=args.rotate, elastic_p=args.elastic, thicker_px=args.thicker_pen)
    if args.no_photo_augmentation:
        augmentation = dataclasses.replace(augmentation, stroke_p=0.0, blur_p=0.0)
    recipe = Recipe(
        epochs=args.epochs,
        batch_size=args.batch_size,
        max_lr=args.max_lr,
        augmentation=augmentation,
        ema_decay=args.ema_decay,
        teachers=args.teachers,
        teacher_epochs=args.teacher_epochs,
        teacher_architecture=args.teacher_architecture,
        teacher_max_lr=args.teacher_max_lr,
        seed=args.seed,
        pretrained=args.pretrained,
        init_sha256=sha256_of(args.init) if args.init else None,
        teacher_sha256=tuple(sha256_of(t) for t in args.teacher_weights),
    )
    try:  # the readers' errors name the file, row or size at fault: a message, not a traceback
        data = load(args.data).subset(args.limit)
        train_set, val_set = split(data, args.val_size)
        extras = [load(path) for path in args.extra_data]
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.final:
        train_set = data  # the validation digits stay the yardstick, but no longer a held-out one
    train_set = concatenate(train_set, *extras)
    held_out = "held out" if not args.final else "NOT held out: --final trains on them"
    extra = "".join(f" + {len(e)} from {e.source}" for e in extras)
    print(
        f"data: {data.source}{extra}, {len(train_set)} train / {len(val_set)} validation ({held_out}), device {device}"
    )

    began = time.perf_counter()
    try:
        trained = train(
            recipe,
            train_set,
            val_set,
            args.checkpoint_dir or Path("runs") / args.name,
            device,
            args.resume,
            init=args.init,
            teacher_files=tuple(args.teacher_weights),
        )
    except (PretrainedUnavailableError, CheckpointMismatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - began

    hardware = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    )
    publish(
        trained.model,
        val_set,
        not args.final,
        args.out,
        args.name,
        {
            "architecture": ARCHITECTURE,
            "recipe": dataclasses.asdict(recipe),
            **({"init": {"weights": args.init.name, "sha256": recipe.init_sha256}} if args.init else {}),
            "data": {
                "source": data.source,
                "sha256": data.sha256(),
                "train": len(train_set),
                "validation": len(val_set),
                "validation_held_out": not args.final,
                "extra": [{"source": e.source, "sha256": e.sha256(), "digits": len(e)} for e in extras],
            },
            "history": trained.history,
            "teachers": trained.teachers,
            "training": {"seconds": round(seconds, 1), "hardware": hardware},
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
