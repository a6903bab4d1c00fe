"""The training recipe: augmentation, one-cycle SGD, per-epoch checkpoints that can be resumed."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from digitcloud import model as spec
from train.data import Dataset


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; written into the metadata JSON."""

    epochs: int = 4
    batch_size: int = 128
    max_lr: float = 0.05
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    rotate_deg: float = 10.0
    scale: float = 0.1
    shift_px: float = 2.0
    seed: int = 0
    pretrained: bool = False


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def augment(x: torch.Tensor, recipe: Recipe, generator: torch.Generator) -> torch.Tensor:
    """Random rotation, scale and shift per digit, in one batched ``grid_sample``.

    ``x`` is ``[B, 1, 28, 28]`` in [0, 1]; the border fills with 0, MNIST's background.
    """
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=generator, device=x.device) * (hi - lo) + lo

    angle = uniform(-recipe.rotate_deg, recipe.rotate_deg) * math.pi / 180
    scale = uniform(1 - recipe.scale, 1 + recipe.scale)
    # affine_grid works in [-1, 1] coordinates: one pixel is 2/28 of the width.
    shift = recipe.shift_px * 2 / x.shape[-1]
    tx, ty = uniform(-shift, shift), uniform(-shift, shift)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - spec.MEAN) / spec.STD


def train(
    recipe: Recipe,
    train_set: Dataset,
    val_set: Dataset,
    checkpoint_dir: Path,
    device: torch.device,
    resume: bool = False,
    log: Any = print,
) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train and return the model with per-epoch history; a checkpoint is saved every epoch."""
    seed_everything(recipe.seed)
    net = spec.build_model(pretrained=recipe.pretrained).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        net.parameters(), lr=recipe.max_lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
    )
    steps_per_epoch = math.ceil(len(train_set) / recipe.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=recipe.max_lr, epochs=recipe.epochs, steps_per_epoch=steps_per_epoch
    )
    generator = torch.Generator(device=device).manual_seed(recipe.seed)
    history: list[dict[str, float]] = []
    start_epoch = 0

    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    last = checkpoint_dir / "last.pt"
    if resume and last.exists():
        # Our own file, but still loaded with weights_only: a checkpoint is never trusted to run code.
        state = torch.load(last, map_location=device, weights_only=True)
        if state["recipe"] != dataclasses.asdict(recipe):
            raise ValueError(f"{last} was written by a different recipe: {state['recipe']}")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"].cpu() if device.type == "cpu" else state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = state["history"]
        start_epoch = state["epoch"]
        log(f"resumed from {last} after epoch {start_epoch}")

    images = torch.from_numpy(train_set.images)
    labels = torch.from_numpy(train_set.labels)
    for epoch in range(start_epoch, recipe.epochs):
        net.train()
        began = time.perf_counter()
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(recipe.seed + epoch))
        total_loss = 0.0
        for step in range(steps_per_epoch):
            idx = order[step * recipe.batch_size : (step + 1) * recipe.batch_size]
            x = images[idx].to(device, non_blocking=True).unsqueeze(1).float().div_(255)
            y = labels[idx].to(device, non_blocking=True)
            x = _normalise(augment(x, recipe, generator)).contiguous(memory_format=torch.channels_last)
            with spec.autocast(device):
                loss = F.cross_entropy(net(x), y, label_smoothing=recipe.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += loss.item()
            if step % 50 == 0:
                log(f"epoch {epoch + 1} step {step}/{steps_per_epoch} loss {loss.item():.4f}")
        probs = spec.predict_probabilities(net.eval(), val_set.images, batch_size=1024)
        accuracy = float((probs.argmax(1) == val_set.labels).mean())
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": total_loss / steps_per_epoch,
                "val_accuracy": accuracy,
                "seconds": time.perf_counter() - began,
            }
        )
        torch.save(
            {
                "epoch": epoch + 1,
                "recipe": dataclasses.asdict(recipe),
                "model": net.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
            },
            last.with_suffix(".tmp"),
        )
        last.with_suffix(".tmp").replace(last)
        log(f"epoch {epoch + 1}/{recipe.epochs}: val accuracy {accuracy:.4%} ({history[-1]['seconds']:.0f} s)")
    return net, history
