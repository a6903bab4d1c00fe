"""Write the trained weights (fp16 safetensors) and the metadata JSON beside them."""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from digitcloud.model import predict_probabilities, sha256_of
from train.data import Dataset
from train.report import confusion_matrix, draw_confusion_matrix, draw_misclassified


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The safetensors file of ``state``, the same bytes every time for the same tensors.

    safetensors keeps ``__metadata__`` in a Rust HashMap, whose order changes from one call to the
    next: two runs that trained bit-identical tensors wrote files with different sha256s. The keys
    are put back in the order given; the header keeps its length, so the tensor offsets stand.
    """
    blob = save(state, metadata=metadata)
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + size])
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(text) > size:  # cannot happen while the keys only move: same bytes, other order
        raise RuntimeError(f"safetensors header grew from {size} to {len(text)} bytes")
    return blob[:8] + text.ljust(size) + blob[8 + size :]


def export(net: nn.Module, out_dir: Path, name: str, metadata: dict[str, Any]) -> tuple[Path, str]:
    """Save ``<name>.safetensors`` + ``<name>.json``; return the weights path and its sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    # fp16 halves the file (43 MB); predictions are made in fp32 after loading.
    state = {
        k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in net.state_dict().items()
    }
    path.write_bytes(safetensors_bytes(state, {"format": "pt", "architecture": "resnet34-1ch-10cls"}))
    sha = sha256_of(path)
    meta = {
        "weights": path.name,
        "sha256": sha,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        **metadata,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path, sha


def publish(
    net: nn.Module, val_set: Dataset, held_out: bool, out_dir: Path, name: str, metadata: dict[str, Any]
) -> tuple[Path, str]:
    """Measure ``net`` on the validation digits, then write the weights, the metadata (with the
    validation numbers added), the confusion matrix and the misclassified grid into ``out_dir``.

    ``held_out`` False (``train --final``): ``net`` learnt from those digits, and every number and
    picture says so."""
    predicted = predict_probabilities(net.eval(), val_set.images, batch_size=1024).argmax(1)
    matrix = confusion_matrix(val_set.labels, predicted)
    accuracy = float((predicted == val_set.labels).mean())
    validation = {
        "accuracy": accuracy,
        "errors": int((predicted != val_set.labels).sum()),
        "per_class_accuracy": {str(d): float(matrix[d, d] / max(1, matrix[d].sum())) for d in range(10)},
        "held_out": held_out,
    }
    caveat = "" if held_out else " (trained on: not held out)"
    path, sha = export(net, out_dir, name, {**metadata, "validation": validation})
    draw_confusion_matrix(
        matrix, out_dir / f"{name}.confusion.png", f"{name}: validation {accuracy:.2%} on {len(val_set)} digits{caveat}"
    )
    drawn = draw_misclassified(val_set.images, val_set.labels, predicted, out_dir / f"{name}.misclassified.png")
    print(f"validation accuracy{caveat} {accuracy:.4%} ({drawn} misclassified drawn)")
    print(f"wrote {path} sha256 {sha}")
    print(f'to ship it, pin it in digitcloud/model.py: Weights(filename="{path.name}", sha256="{sha}")')
    return path, sha
