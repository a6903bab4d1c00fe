"""The training recipe: teachers, then a distilled student with an EMA of its weights.

1. ``teachers`` networks are trained on the data, each from its own seed: resnet34 *without* the
   max-pool (4x the compute of the shipped model, more accurate on 28x28 digits), or with
   ``teacher_architecture="small-cnn"`` the CPU-friendly network of ``train.small_cnn``. Exported
   weights of the shipped architecture (``teacher_files``, e.g. the shipped model itself) can
   join or replace them: those are loaded, not trained.
2. The shipped architecture (the fast 7x7/2 + max-pool stem) is trained on the hard labels and,
   with weight ``distill_weight``, on the teachers' averaged softened probabilities (knowledge
   distillation, temperature ``temperature``), both on the same augmented batch.
3. An exponential moving average (EMA) of the student's weights is what gets exported, with its
   BatchNorm statistics re-estimated for those averaged weights over the un-augmented training
   digits. (Averaged running statistics do not fit averaged weights: the first GPU run exported
   them as they were and its EMA read 96.4 % of the validation digits; re-estimated, 99.6 %.)

Every stage checkpoints once per epoch and ``resume=True`` continues from the last one.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from torchvision.models import ResNet

from digitcloud import model as spec
from train.augment import Augmentation, augment
from train.data import Dataset
from train.small_cnn import build_small_cnn


@dataclass(frozen=True)
class Recipe:
    """Everything that decides the trained weights; written into the metadata JSON."""

    epochs: int = 30
    batch_size: int = 256
    max_lr: float = 0.1
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augmentation: Augmentation = field(default_factory=Augmentation)
    ema_decay: float = 0.999  # 0 turns the moving average off
    teachers: int = 2  # 0 trains the student on the labels alone
    teacher_epochs: int = 12
    teacher_architecture: str = "resnet34-no-maxpool"  # a key of TEACHER_ARCHITECTURES
    teacher_max_lr: float | None = None  # None: max_lr
    distill_weight: float = 0.5
    temperature: float = 2.0
    seed: int = 0
    pretrained: bool = False
    init_sha256: str | None = None  # fine-tune: the student starts from these exported weights
    teacher_sha256: tuple[str, ...] = ()  # exported weights distilled from as they are (teacher_files)


@dataclass
class Trained:
    model: nn.Module  # the exported weights: the moving average when ema_decay > 0
    history: list[dict[str, float]]
    teachers: list[dict[str, Any]]  # per teacher: final validation accuracy and history


def recipe_as_written(saved: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's recipe with the fields added since it was written at their defaults, which
    train as the code did before them (``teacher_architecture``, ``Augmentation.elastic_p``)."""
    defaults = dataclasses.asdict(Recipe())
    augmentation = {**defaults["augmentation"], **saved.get("augmentation", {})}
    return {**defaults, **saved, "augmentation": augmentation}


# Recipe fields a trained teacher does not depend on: they shape the student alone (a teacher's peak
# learning rate is compared as its own max_lr). A teacher's checkpoint resumes when the rest match, so
# the teachers of one run serve students with other epochs, another --init or distillation weight.
STUDENT_ONLY_FIELDS = frozenset(
    {
        "epochs",
        "teachers",
        "distill_weight",
        "temperature",
        "pretrained",
        "init_sha256",
        "teacher_sha256",
        "teacher_max_lr",
    }
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_teacher() -> ResNet:
    """The shipped architecture without its max-pool: 14x14 features after the stem instead of 7x7."""
    net = spec.build_model()
    net.maxpool = nn.Identity()
    return net


# The networks a trained teacher can be (``--teacher-architecture``).
TEACHER_ARCHITECTURES: dict[str, Callable[[], nn.Module]] = {
    "resnet34-no-maxpool": build_teacher,
    "small-cnn": build_small_cnn,
}


def _normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - spec.MEAN) / spec.STD


class CheckpointMismatchError(ValueError):
    """``--resume`` found a checkpoint written by another recipe or trained on other digits."""


class PretrainedUnavailableError(RuntimeError):
    """``--pretrained``'s ImageNet weights could not be downloaded."""


def batch_bounds(count: int, batch_size: int) -> list[tuple[int, int]]:
    """``(start, end)`` of each batch over ``count`` items; a last batch of one item joins the one before,
    since BatchNorm in training mode cannot take a single digit (layer4 works on 1x1 maps)."""
    ends = [*range(batch_size, count, batch_size), count]
    if len(ends) > 1 and ends[-1] - ends[-2] == 1:
        del ends[-2]
    return list(zip([0, *ends[:-1]], ends, strict=True))


def accuracy(net: nn.Module, val_set: Dataset) -> float:
    probs = spec.predict_probabilities(net.eval(), val_set.images, batch_size=1024)
    return float((probs.argmax(1) == val_set.labels).mean())


Net = TypeVar("Net", bound=nn.Module)


def recalibrate_batchnorm(net: Net, images: np.ndarray, batch_size: int = 256) -> Net:
    """Re-estimate every BatchNorm's running statistics for ``net``'s weights as they are, over
    uint8 digits ``[N, 28, 28]`` (torch's ``update_bn``, as used for weight averaging); eval mode."""
    device = next(net.parameters()).device
    batches = (
        spec.to_model_input(images[start:end], device).contiguous(memory_format=torch.channels_last)
        for start, end in batch_bounds(len(images), batch_size)
    )
    with torch.no_grad():  # the statistics come from the forward pass alone
        update_bn(batches, net)
    return net.eval()


# Digits used to re-estimate the EMA's BatchNorm statistics for the per-epoch validation number.
EPOCH_RECALIBRATION_DIGITS = 4096


def train(
    recipe: Recipe,
    train_set: Dataset,
    val_set: Dataset,
    checkpoint_dir: Path,
    device: torch.device,
    resume: bool = False,
    log: Any = print,
    init: Path | None = None,
    teacher_files: tuple[Path, ...] = (),
) -> Trained:
    """Train the teachers, then the student; return the student to export.

    ``init`` (with ``recipe.init_sha256``, checked) starts the student from exported weights
    instead of a random or ImageNet initialisation: fine-tuning. ``teacher_files`` (with
    ``recipe.teacher_sha256``, checked) are exported weights of the shipped architecture that the
    student also learns from, after any trained teachers."""
    if (init is None) != (recipe.init_sha256 is None):
        raise ValueError("init and recipe.init_sha256 go together")
    if len(teacher_files) != len(recipe.teacher_sha256):
        raise ValueError("teacher_files and recipe.teacher_sha256 go together")
    if recipe.teacher_architecture not in TEACHER_ARCHITECTURES:
        known = ", ".join(TEACHER_ARCHITECTURES)
        raise ValueError(f"unknown teacher architecture {recipe.teacher_architecture!r}; known: {known}")
    build_trained_teacher = TEACHER_ARCHITECTURES[recipe.teacher_architecture]
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # Built first: --pretrained downloads here, and an offline user should learn that before any teacher trains.
    seed_everything(recipe.seed)
    if init is not None:
        net = spec.load_model(path=init, sha256=recipe.init_sha256)
    else:
        try:
            net = spec.build_model(pretrained=recipe.pretrained)
        except OSError as exc:  # only the download: a full disk hours later is not "are you online?"
            reason = f"could not download the ImageNet weights ({exc}); are you online?"
            raise PretrainedUnavailableError(reason) from exc
    teachers: list[nn.Module] = []
    summaries: list[dict[str, Any]] = []
    teacher_lr = recipe.max_lr if recipe.teacher_max_lr is None else recipe.teacher_max_lr
    teacher_recipe = dataclasses.replace(recipe, max_lr=teacher_lr)
    for i in range(recipe.teachers):
        folder = checkpoint_dir / f"teacher-{i}"
        run = _Run(teacher_recipe, recipe.teacher_epochs, recipe.seed + 1 + i, folder, device, STUDENT_ONLY_FIELDS)
        seed_everything(recipe.seed + 1 + i)
        teacher, history = run.fit(build_trained_teacher(), train_set, val_set, (), resume, log, f"teacher {i + 1}: ")
        teachers.append(teacher.eval().requires_grad_(False))
        summaries.append({"val_accuracy": history[-1]["val_accuracy"] if history else None, "history": history})
    for path, sha256 in zip(teacher_files, recipe.teacher_sha256, strict=True):
        loaded = spec.load_model(path=path, sha256=sha256).to(device).to(memory_format=torch.channels_last)
        teachers.append(loaded.requires_grad_(False))
        summaries.append({"weights": path.name, "sha256": sha256, "val_accuracy": accuracy(loaded, val_set)})
        log(f"teacher {path.name}: val accuracy {summaries[-1]['val_accuracy']:.4%} (loaded, not trained)")
    run = _Run(recipe, recipe.epochs, recipe.seed, checkpoint_dir, device)
    student, history = run.fit(net, train_set, val_set, teachers, resume, log, "")
    return Trained(student, history, summaries)


@dataclass
class _Run:
    """One network's training: one-cycle SGD, optional distillation and EMA, per-epoch checkpoints."""

    recipe: Recipe
    epochs: int
    seed: int
    checkpoint_dir: Path
    device: torch.device
    ignored_on_resume: frozenset[str] = frozenset()  # recipe fields this network does not depend on

    def fit(
        self,
        net: nn.Module,
        train_set: Dataset,
        val_set: Dataset,
        teachers: Any,
        resume: bool,
        log: Any,
        prefix: str,
    ) -> tuple[nn.Module, list[dict[str, float]]]:
        recipe, device = self.recipe, self.device
        seed_everything(self.seed)  # the student was initialised under recipe.seed, each teacher is here
        net = net.to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            net.parameters(), lr=recipe.max_lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay
        )
        bounds = batch_bounds(len(train_set), recipe.batch_size)
        steps_per_epoch = len(bounds)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=recipe.max_lr, epochs=self.epochs, steps_per_epoch=steps_per_epoch
        )
        ema = (
            AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(recipe.ema_decay), use_buffers=True)
            if recipe.ema_decay > 0
            else None
        )
        generator = torch.Generator(device=device).manual_seed(self.seed)
        history: list[dict[str, float]] = []
        start_epoch = 0

        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        last = self.checkpoint_dir / "last.pt"
        train_digits = train_set.sha256()
        if resume and last.exists():
            # Our own file, but still loaded with weights_only: a checkpoint is never trusted to run code.
            # On the CPU: the RNG states must be CPU tensors; the rest is copied to the device as loaded.
            state = torch.load(last, map_location="cpu", weights_only=True)
            saved, now = recipe_as_written(state["recipe"]), dataclasses.asdict(recipe)
            differ = [key for key in now if key not in self.ignored_on_resume and saved[key] != now[key]]
            if differ:
                raise CheckpointMismatchError(
                    f"{last} was written by a different recipe ({', '.join(differ)}): {state['recipe']}"
                )
            if state.get("train_digits", train_digits) != train_digits:  # checkpoints before this check lack it
                raise CheckpointMismatchError(
                    f"{last} was trained on different digits "
                    "(other --data or --extra-data, or --final, --limit or --val-size changed?)"
                )
            net.load_state_dict(state["model"])
            if ema is not None:
                ema.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history = state["history"]
            start_epoch = state["epoch"]
            log(f"{prefix}resumed from {last} after epoch {start_epoch}")
        elif resume:  # not an error: a run stopped during its teachers has no student checkpoint yet
            log(f"{prefix}no checkpoint at {last}: starting from the first epoch")

        # The whole uint8 dataset lives on the device (47 MB for MNIST): no loader, no copies per step.
        images = torch.from_numpy(train_set.images).to(device)
        labels = torch.from_numpy(train_set.labels).to(device)
        exported = ema.module if ema is not None else net
        for epoch in range(start_epoch, self.epochs):
            net.train()
            began = time.perf_counter()
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed + epoch))
            total_loss = torch.zeros((), device=device)
            for step, (start, end) in enumerate(bounds):
                idx = order[start:end].to(device)
                x = images[idx].unsqueeze(1).float().div_(255)
                x = _normalise(augment(x, recipe.augmentation, generator)).contiguous(memory_format=torch.channels_last)
                loss = self._loss(net, x, labels[idx], teachers)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(net)
                total_loss += loss.detach()
                if step % 50 == 0:  # .item() waits for the GPU: only now and then
                    log(f"{prefix}epoch {epoch + 1} step {step}/{steps_per_epoch} loss {loss.item():.4f}")
            record = {"epoch": epoch + 1, "train_loss": float(total_loss) / steps_per_epoch}
            if ema is not None:
                # on a copy: the EMA keeps averaging its own statistics until the end
                probe = copy.deepcopy(ema.module)
                record["val_accuracy"] = accuracy(
                    recalibrate_batchnorm(probe, train_set.images[:EPOCH_RECALIBRATION_DIGITS]), val_set
                )
                record["val_accuracy_raw"] = accuracy(net, val_set)
            else:
                record["val_accuracy"] = accuracy(net, val_set)
            record["seconds"] = time.perf_counter() - began
            history.append(record)
            torch.save(
                {
                    "epoch": epoch + 1,
                    "recipe": dataclasses.asdict(recipe),
                    "train_digits": train_digits,
                    "model": net.state_dict(),
                    "ema": ema.state_dict() if ema is not None else None,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "history": history,
                },
                last.with_suffix(".tmp"),
            )
            last.with_suffix(".tmp").replace(last)
            log(
                f"{prefix}epoch {epoch + 1}/{self.epochs}: val accuracy {record['val_accuracy']:.4%} "
                f"({record['seconds']:.0f} s)"
            )
        if ema is not None:
            recalibrate_batchnorm(exported, train_set.images)
        return exported.eval(), history

    def _loss(self, net: nn.Module, x: torch.Tensor, y: torch.Tensor, teachers: Any) -> torch.Tensor:
        recipe = self.recipe
        with spec.autocast(self.device):
            logits = net(x)
            loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
            if not teachers:
                return loss
            t = recipe.temperature
            with torch.no_grad():
                soft = torch.stack([F.softmax(teacher(x).float() / t, dim=1) for teacher in teachers]).mean(0)
            distill = F.kl_div(F.log_softmax(logits.float() / t, dim=1), soft, reduction="batchmean") * t * t
            return (1 - recipe.distill_weight) * loss + recipe.distill_weight * distill
