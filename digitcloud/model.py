"""The one description of the digit model, shared by the local backend, predict.py and train/.

The architecture is torchvision's resnet34 with a 1-channel stem and 10 classes. The stem is
torchvision's own (7x7 stride-2 conv + 3x3 stride-2 max-pool): on a 28x28 digit it is the only
variant that reaches the CPU-speed goal (see DESIGN.md, "Stem variant").

torch is imported inside functions, so ``from digitcloud.model import WEIGHTS`` costs nothing and
``import digitcloud`` never pulls torch in.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from digitcloud.errors import MissingDependencyError, WeightsError

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torchvision.models import ResNet

LABELS: tuple[int, ...] = tuple(range(10))
INPUT_SIZE = 28
# MNIST's pixel statistics: inputs are uint8 digits, light ink on dark, scaled to [0, 1] first.
MEAN = 0.1307
STD = 0.3081

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class Weights:
    """A weights file bundled with the package, pinned by its sha256."""

    filename: str
    sha256: str

    @property
    def path(self) -> Path:
        return WEIGHTS_DIR / self.filename

    @property
    def metadata_path(self) -> Path:
        return self.path.with_suffix(".json")

    def metadata(self) -> dict[str, Any]:
        """Recipe, data hash and validation numbers written by ``python -m train``."""
        return json.loads(self.metadata_path.read_text())


# Pinned: a file whose sha256 differs is refused. `python -m train` prints the new line to paste here.
WEIGHTS = Weights(
    filename="digitcloud-resnet34-v6.safetensors",
    sha256="efa491361b305af22d58725766526b04ac92005facfa5e097f70d4839eaa4092",
)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_torch() -> Any:
    """torch, or a MissingDependencyError that names the extra to install."""
    try:
        import torch
        import torchvision  # noqa: F401  (build_model needs it; fail early and clearly)
    except ImportError as exc:
        raise MissingDependencyError(
            "the local model needs torch and torchvision: pip install 'digitcloud[local]'"
        ) from exc
    return torch


def build_model(pretrained: bool = False) -> ResNet:
    """resnet34 with a 1-channel stem and 10 classes, randomly initialised unless ``pretrained``.

    ``pretrained`` starts from torchvision's ImageNet weights (downloaded, so online only): the
    first conv's RGB filters are summed into one grey filter, and the classifier is replaced.
    """
    torch = import_torch()
    from torchvision.models import ResNet34_Weights, resnet34

    if pretrained:
        net = resnet34(weights=ResNet34_Weights.IMAGENET1K_V1)
        rgb = net.conv1.weight.detach()
        net.fc = torch.nn.Linear(net.fc.in_features, len(LABELS))
    else:
        net = resnet34(weights=None, num_classes=len(LABELS))
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    if pretrained:
        with torch.no_grad():
            net.conv1.weight.copy_(rgb.sum(dim=1, keepdim=True))
    return net


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, refused when missing or when their sha256 is not the pinned one.

    Hashing and loading the same bytes reads the file once and leaves no gap in which it could
    change between the check and the load."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"weights file not found: {str(path)!r}") from None
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {str(path)!r}: {exc.strerror or exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise WeightsError(
            f"weights file {str(path)!r} has sha256 {actual}, expected {expected_sha256}; refusing to load it"
        )
    return data


def load_model(
    weights: Weights | None = None,
    *,
    path: Path | None = None,
    sha256: str | None = None,
    device: str = "cpu",
) -> ResNet:
    """The model in eval mode with verified weights, as float32 on ``device``.

    By default the bundled ``WEIGHTS``; ``path`` + ``sha256`` load another file (a fresh training
    run, say) under the same check.
    """
    torch = import_torch()
    from safetensors.torch import load

    weights = weights or WEIGHTS
    path = Path(path) if path is not None else weights.path
    state = load(read_verified(path, sha256 or weights.sha256))
    net = build_model()
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    net.eval()
    return net.to(device=torch.device(device))


def to_model_input(digits: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` digits (light ink on dark) -> normalised float ``[N, 1, 28, 28]``."""
    torch = import_torch()
    x = torch.from_numpy(np.ascontiguousarray(digits)).to(device=device, non_blocking=True)
    x = x.unsqueeze(1).float().div_(255.0)
    return x.sub_(MEAN).div_(STD)


def predict_probabilities(net: nn.Module, digits: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax probabilities ``[N, 10]`` (float32) for uint8 digits ``[N, 28, 28]``.

    The one inference loop: the local backend, predict.py and train/ all call it. Batches of
    ``batch_size`` bound memory; on CUDA the forward pass runs under bf16 autocast. ``net`` should
    be in eval mode and channels_last (``load_model`` + ``prepare``).
    """
    torch = import_torch()
    device = next(net.parameters()).device
    out = np.empty((len(digits), len(LABELS)), dtype=np.float32)
    with torch.inference_mode(), autocast(device):
        for start in range(0, len(digits), batch_size):
            x = to_model_input(digits[start : start + batch_size], device)
            logits = net(x.contiguous(memory_format=torch.channels_last))
            out[start : start + len(x)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
    return out


def load_for_serving(weights: Weights | None = None) -> nn.Module:
    """The model on CUDA when there is one (cudnn autotuned), else the CPU; prepared and warmed up
    so the first real request pays no start-up cost."""
    torch = import_torch()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    net = prepare(load_model(weights, device=device))
    batch = serving_batch_size(net)
    predict_probabilities(net, np.zeros((batch, INPUT_SIZE, INPUT_SIZE), dtype=np.uint8), batch)
    return net


def serving_batch_size(net: nn.Module) -> int:
    """Digits per forward pass: 16,384 on a GPU (an estimate, not yet measured on one), 256 on a CPU."""
    return 16_384 if next(net.parameters()).device.type == "cuda" else 256


def prediction_entries(probabilities: np.ndarray) -> list[dict[str, Any]]:
    """Wire contract v1 entries, one per digit: ``{digit, confidence, probabilities[10]}``."""
    rounded = np.round(probabilities.astype(np.float64), 6)
    digits = probabilities.argmax(axis=1)
    return [
        {"digit": int(d), "confidence": float(row[d]), "probabilities": row.tolist()}
        for d, row in zip(digits, rounded, strict=True)
    ]


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA (training and inference alike); plain fp32 elsewhere."""
    torch = import_torch()
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare(net: nn.Module) -> nn.Module:
    """For inference on 28x28 digits: eval mode, each BatchNorm folded into the conv before it, the
    padding-only taps of layer4 dropped, channels_last.

    channels_last is ~1.7x faster than NCHW on this project's 2-core CPU (performance anchors);
    folding BatchNorm adds ~6 % throughput and cuts single-digit latency ~10 %; dropping layer4's
    dead taps removes half the weights (21.3M -> 10.1M), ~4 % throughput and ~3 ms of latency
    (bench/README.md). Outputs are unchanged (probabilities within 1e-5, tested). The local backend
    and predict.py both use it, so they agree. The result refuses any input size but 28x28.
    """
    torch = import_torch()
    from torch.fx.experimental.optimization import fuse

    net = fuse(net.eval())
    _drop_padding_taps(net)

    def only_digits(_module: nn.Module, args: tuple[Any, ...]) -> None:
        if tuple(args[0].shape[-2:]) != (INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"the prepared model takes 28x28 digits, got {tuple(args[0].shape[-2:])}")

    net.register_forward_pre_hook(only_digits)
    return net.to(memory_format=torch.channels_last)


def _drop_padding_taps(net: nn.Module) -> None:
    """On a 28x28 digit layer4 runs at 1x1, reading layer3's 2x2 output. Its first 3x3 conv (stride
    2, padding 1) then only ever multiplies the 2x2 input by its lower-right 2x2 taps, and every
    other 3x3 conv sees a 1x1 input: all taps but the centre multiply zero padding. Each is swapped
    for the conv of just the taps it uses (2x2 or 1x1, no padding): the same sums, 11M fewer
    weights to read."""
    torch = import_torch()
    for name, conv in list(net.named_modules()):
        if not name.startswith("layer4.") or not isinstance(conv, torch.nn.Conv2d) or conv.kernel_size != (3, 3):
            continue
        taps = conv.weight.detach()[:, :, 1:, 1:] if conv.stride == (2, 2) else conv.weight.detach()[:, :, 1:2, 1:2]
        small = torch.nn.Conv2d(conv.in_channels, conv.out_channels, taps.shape[-1], bias=conv.bias is not None)
        with torch.no_grad():
            small.weight.copy_(taps)
            if conv.bias is not None:
                small.bias.copy_(conv.bias)
        parent, _, attr = name.rpartition(".")
        setattr(net.get_submodule(parent), attr, small.to(conv.weight.device))
