"""Training data readers: MNIST IDX files, a Kaggle Digit Recognizer CSV, or an image folder.

Each reader returns ``Dataset(images uint8 [N, 28, 28] light ink on dark, labels int64 [N])``.
Image folders go through ``digitcloud.inputs`` so a photo is normalised exactly as at inference.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IDX_IMAGES = "train-images-idx3-ubyte"
IDX_LABELS = "train-labels-idx1-ubyte"


@dataclass(frozen=True)
class Dataset:
    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def sha256(self) -> str:
        """A hash of the pixels and labels, whatever file format they came from."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.ascontiguousarray(self.labels.astype(np.int64)).tobytes())
        return digest.hexdigest()

    def subset(self, limit: int | None) -> Dataset:
        if limit is None or limit >= len(self):
            return self
        return Dataset(self.images[:limit], self.labels[:limit], f"{self.source} (first {limit})")


def load(path: str | Path) -> Dataset:
    """Pick the reader from what ``path`` is: a CSV file, an IDX folder or an image folder."""
    path = Path(path)
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_kaggle_csv(path)
    if path.is_dir():
        if _find_idx(path, IDX_IMAGES) is not None:
            return read_mnist_idx(path)
        if any((path / str(d)).is_dir() for d in range(10)):
            return read_image_folder(path)
    raise FileNotFoundError(
        f"{str(path)!r} is not a Kaggle CSV, a folder with {IDX_IMAGES}[.gz], "
        "or a folder with one subfolder per digit (0/ … 9/)"
    )


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def _read_idx(path: Path) -> np.ndarray:
    # torchvision's reader takes an uncompressed path; unzip .gz files to a temporary copy first.
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    try:
        if path.suffix != ".gz":
            return read_sn3_pascalvincent_tensor(str(path), strict=True).numpy()
        with tempfile.TemporaryDirectory() as tmp:
            raw = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src, open(raw, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return read_sn3_pascalvincent_tensor(str(raw), strict=True).numpy()
    # torchvision asserts on a bad header and fails to reshape a short body; gzip raises EOFError
    # for a cut-off download and BadGzipFile (an OSError) for one that is not gzip at all.
    except (AssertionError, RuntimeError, EOFError, gzip.BadGzipFile, KeyError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ValueError(f"{str(path)!r} is not a complete IDX file (truncated or corrupt?): {reason}") from exc


def read_mnist_idx(folder: str | Path) -> Dataset:
    folder = Path(folder)
    images_path = _find_idx(folder, IDX_IMAGES)
    labels_path = _find_idx(folder, IDX_LABELS)
    if images_path is None or labels_path is None:
        raise FileNotFoundError(f"{str(folder)!r} lacks {IDX_IMAGES}[.gz] or {IDX_LABELS}[.gz]")
    images = _read_idx(images_path).astype(np.uint8)
    labels = _read_idx(labels_path).astype(np.int64)
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise ValueError(f"unexpected MNIST shapes {images.shape} / {labels.shape} in {str(folder)!r}")
    return Dataset(images, labels, f"MNIST IDX {str(folder)!r}")


def read_kaggle_csv(path: str | Path) -> Dataset:
    """Kaggle's train.csv: a header ``label,pixel0..pixel783`` and one digit per row. Blank lines
    and a byte-order mark are ignored; a bad row is an error naming its number (1 = the first digit)."""
    from digitcloud.inputs import is_blank_csv_row

    path = Path(path)
    images, labels = [], []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if not header or header[0].strip().lower() != "label" or len(header) != 785:
            raise ValueError(f"{str(path)!r}: training needs a header 'label,pixel0,…,pixel783'")
        number = 0
        for row in reader:
            if is_blank_csv_row(row):
                continue
            number += 1
            try:
                values = np.array([int(v) for v in row], dtype=np.int64)
            except ValueError:
                raise ValueError(f"{str(path)!r} row {number}: values must be integers") from None
            if len(values) != 785:
                raise ValueError(f"{str(path)!r} row {number}: {len(values)} values, expected 785 (label + 784)")
            if not 0 <= values[0] <= 9 or values[1:].min() < 0 or values[1:].max() > 255:
                raise ValueError(f"{str(path)!r} row {number}: label must be 0..9 and pixels 0..255")
            labels.append(values[0])
            images.append(values[1:].astype(np.uint8).reshape(28, 28))
    if not images:
        raise ValueError(f"{str(path)!r}: no rows")
    return Dataset(np.stack(images), np.array(labels, dtype=np.int64), f"Kaggle CSV {str(path)!r}")


def read_image_folder(folder: str | Path) -> Dataset:
    """``folder/0/*.png … folder/9/*.jpg``: every image normalised by digitcloud.inputs."""
    from digitcloud import inputs

    folder = Path(folder)
    images, labels, skipped = [], [], []
    for digit in range(10):
        sub = folder / str(digit)
        if not sub.is_dir():
            continue
        for path in inputs.list_image_files(sub):
            try:
                images.append(inputs.normalize(path))
                labels.append(digit)
            except inputs.InputError as exc:
                skipped.append(f"{path}: {exc}")
    if not images:
        raise ValueError(f"{str(folder)!r}: no usable images in 0/ … 9/")
    for message in skipped:
        print(f"skipped {message}")
    # Read in digit order; shuffled (fixed seed) so that --limit and the validation tail hold every digit.
    order = np.random.default_rng(0).permutation(len(labels))
    return Dataset(np.stack(images)[order], np.array(labels, dtype=np.int64)[order], f"image folder {str(folder)!r}")


def concatenate(first: Dataset, *more: Dataset) -> Dataset:
    """``first`` followed by the digits of ``more`` (``train --extra-data``): one training set."""
    if not more:
        return first
    sets = (first, *more)
    return Dataset(
        np.concatenate([d.images for d in sets]),
        np.concatenate([d.labels.astype(np.int64) for d in sets]),
        " + ".join(d.source for d in sets),
    )


def split(data: Dataset, val_size: int | None) -> tuple[Dataset, Dataset]:
    """The last ``val_size`` digits are the validation set (MNIST default: the last 10,000).

    Default size: 10,000, or a sixth of the data when that is smaller. (Image folders are shuffled
    when read, so their tail is not all 9s.)
    """
    n = len(data)
    size = val_size if val_size is not None else min(10_000, n // 6)
    if not 0 < size < n:
        raise ValueError(f"validation size {size} does not fit {n} digits")
    order = np.arange(n)
    train_idx, val_idx = order[: n - size], order[n - size :]
    return (
        Dataset(data.images[train_idx], data.labels[train_idx], data.source + " [train]"),
        Dataset(data.images[val_idx], data.labels[val_idx], data.source + f" [last {size}]"),
    )
