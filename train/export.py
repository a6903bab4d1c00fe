"""Write the trained weights (fp16 safetensors) and the metadata JSON beside them."""

from __future__ import annotations

import datetime as dt
import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from digitcloud.model import sha256_of


def export(net: nn.Module, out_dir: Path, name: str, metadata: dict[str, Any]) -> tuple[Path, str]:
    """Save ``<name>.safetensors`` + ``<name>.json``; return the weights path and its sha256."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.safetensors"
    # fp16 halves the file (43 MB); predictions are made in fp32 after loading.
    state = {
        k: v.detach().to("cpu", torch.float16 if v.is_floating_point() else v.dtype).contiguous()
        for k, v in net.state_dict().items()
    }
    save_file(state, str(path), metadata={"format": "pt", "architecture": "resnet34-1ch-10cls"})
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
