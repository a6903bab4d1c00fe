"""Anything a user has -> 28x28 uint8 MNIST-style digits (light ink on dark). numpy + Pillow only.

Two steps, so one bad item never stops the batch:

* ``expand(images)`` walks the user's argument(s) and yields one ``Item`` per image it names:
  a directory or a glob gives its files, an ``[N, H, W]`` array its N digits, a Kaggle CSV its rows.
* ``Item.load()`` turns one item into a digit (``normalize_image``: EXIF transpose, grey, then the
  MNIST recipe, ``photo.normalize_grey``), or raises ``InputError`` naming the item.
  ``load_items`` does that for a list, keeping errors as values.

This module also guards the decoder (file size and pixel limits); ``formats`` names the decoders
Pillow may try, ``downloads`` fetches URLs. It is shared with ``predict.py``, so a raw photo gives
the same 28x28 in the cloud as locally. It never imports torch: a torch tensor is recognised by
duck typing.

The modules under it, each with one job: ``photo`` (a grey picture -> the 28x28 digit), ``paper``
(polarity and the paper's light), ``clutter`` (what a photo shows besides the digit),
``halftone`` (a dithered black-and-white scan back to grey), ``morphology`` (filters and connected
parts in numpy). ``digits_file`` is the wire's batch file.
"""

from __future__ import annotations

import csv
import glob
import io
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin

from digitcloud import formats, halftone, photo
from digitcloud.batching import ordered_map, prefetched
from digitcloud.config import available_cores
from digitcloud.errors import InputError

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_PIXELS = 50_000_000  # decoded pixels: a 48 MP photo fits, a JPEG up to Pillow's 89 MP (decoded smaller)
WORK_SIZE = 512  # photos are shrunk to at most this before the recipe: a digit needs far less
TIFF_PAGES_LOOKED_AT = 8  # a scan's pages past its reduced-resolution previews; a longer walk costs seconds
DOWNLOADS_AHEAD = 8  # URL inputs fetched at once (load_items)
DECODE_THREADS = min(4, available_cores())  # encoded images decoded at once (load_items)
KAGGLE_PIXELS = 784
CHANNEL_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}  # an array's last axis -> Pillow mode
EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Item:
    """One image to classify: where it came from and how to load it. ``download``, for a URL: the
    step that only waits on a server, which ``load_items`` runs for several items at once.
    ``encoded``: an image file's bytes to decode (a path, bytes, a URL): milliseconds of work on
    nothing the caller holds, so ``load_items`` may run several on threads."""

    source: str
    loader: Callable[[], np.ndarray]
    download: Callable[[], bytes] | None = None
    encoded: bool = False

    def load(self) -> np.ndarray:
        return self.loader()


# --------------------------------------------------------------------------- images -> digits


def _to_grey(img: Image.Image) -> np.ndarray:
    """Float32 grey levels in [0, 255]; transparency is flattened onto a contrasting backdrop."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        return _wide_to_grey(np.asarray(img), img.mode)
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):  # normalize_image turned "P" into "L" or "RGBA"
        rgba = img.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        grey = np.asarray(rgba.convert("L"), dtype=np.float32)
        if alpha.min() < 1.0:
            # Ink drawn on a transparent canvas: put it on white if the ink is dark, else on black.
            # The ink is what is at least half as opaque as the most opaque pixel: a soft brush
            # nowhere half opaque still counts, and a faintly tinted canvas around opaque ink does not.
            peak = float(alpha.max())
            ink = float(grey[alpha >= 0.5 * peak].mean()) if peak > 0 else 0.0
            backdrop = 255.0 if ink < 128 else 0.0
            grey = grey * alpha + backdrop * (1.0 - alpha)
        return grey
    return np.asarray(img.convert("L"), dtype=np.float32)


def _wide_to_grey(arr: np.ndarray, mode: str) -> np.ndarray:
    """32-bit integer and float images (16-bit PNGs, float TIFFs) -> grey levels in [0, 255].

    Floats in [0, 1] are scaled by 255, as for arrays; anything outside [0, 255] is stretched onto
    it (in float64, so int32 and float32 extremes cannot overflow). NaN or infinity is an error.
    """
    if not np.isfinite(arr).all():  # before any cast: casting a signalling NaN raises FE_INVALID
        raise InputError(f"pixels contain NaN or infinity (a {mode} image)")
    arr = arr.astype(np.float64)
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if mode == "F" and lo >= 0.0 and hi <= 1.0:
        return (arr * 255.0).astype(np.float32)
    if lo >= 0.0 and hi <= 255.0:
        return arr.astype(np.float32)
    base = min(lo, 0.0)
    span = hi - base  # 0 for a constant negative image: blank, which photo.normalize_grey reports
    return ((arr - base) * (255.0 / span if span > 0 else 0.0)).astype(np.float32)


def normalize_image(img: Image.Image) -> np.ndarray:
    """A decoded Pillow image -> a 28x28 digit: EXIF transpose, grey, then ``photo.normalize_grey``."""
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        # only when there is something to turn: without a rotation exif_transpose returns a full copy
        img = ImageOps.exif_transpose(img)
    if img.mode == "1" or (img.mode == "P" and "transparency" not in img.info):
        # Grey from the start (the same levels as through RGB): Pillow resizes "1" and "P"
        # nearest-neighbour only, and a dithered scan saved with a two-colour palette is then found
        # by halftone too.
        img = img.convert("L")
    elif img.mode == "P":  # a palette with a transparent colour (a GIF's): RGBA, shrunk by averaging too
        img = img.convert("RGBA")
    if (dots := halftone.grey_halftone(img)) is not None:  # a dithered black-and-white scan, even as JPEG:
        img = halftone.descreen(dots)  # its dots back to grey, at full size
    if max(img.size) > WORK_SIZE:
        # Shrinking first keeps big photos cheap; 512 px leaves the ink far more detail than 20 px needs.
        img = shrink(img)
    # No denoising filter: a 3x3 median erased ballpoint strokes (1-2 px once a photo is shrunk to
    # 512 px) and left such photos "blank"; noise is handled by photo.normalize_grey's paper floor.
    return photo.normalize_grey(_to_grey(img))


def shrink(img: Image.Image, limit: int = WORK_SIZE) -> Image.Image:
    """A new image fitting ``limit`` x ``limit``: exactly what ``img.copy().thumbnail(…, BOX)`` gives,
    without the full-size copy (which doubled the memory a 50 MP photo costs)."""
    width, height = img.size
    if width <= limit and height <= limit:
        return img
    aspect = width / height

    def rounded(number: float, key: Callable[[int], float]) -> int:  # Pillow's own rounding
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    x, y = limit, limit
    if x / y >= aspect:
        x = rounded(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = rounded(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    # Pillow's reduce() (the fast path reducing_gap takes) refuses 16-bit modes: BOX alone is exact there.
    gap = None if img.mode.startswith("I;16") else 2.0
    return img.resize((x, y), Image.Resampling.BOX, reducing_gap=gap)


def normalize_array(arr: Any) -> np.ndarray:
    """One image as an array: (H, W), (H, W, C) or (1, H, W); uint8/int in 0..255 or float in [0, 1]."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim in (2, 3) and min(arr.shape) < 1:
        raise InputError(f"empty array of shape {arr.shape}")
    if arr.ndim in (2, 3) and arr.shape[0] * arr.shape[1] > MAX_PIXELS:
        raise InputError(f"image too large: {arr.shape[1]}x{arr.shape[0]} pixels (limit {MAX_PIXELS:,})")
    if arr.ndim == 3 and arr.shape[-1] in CHANNEL_MODES:
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
        else:
            return normalize_image(Image.fromarray(_as_uint8(arr), CHANNEL_MODES[arr.shape[-1]]))
    if arr.ndim != 2:
        raise InputError(f"expected an image of shape (H, W), (H, W, C) or (1, H, W), got shape {arr.shape}")
    digit = _as_uint8(arr)
    if photo.is_mnist_shaped(digit):
        return np.ascontiguousarray(digit)
    # Through Pillow like a decoded file, so an array and its PNG give the same digit.
    return normalize_image(Image.fromarray(np.ascontiguousarray(digit), "L"))


def _as_uint8(arr: np.ndarray) -> np.ndarray:
    """The documented pixel contract: integers in 0..255, or floats in [0, 1]. Nothing is clipped."""
    kind = arr.dtype.kind
    if kind == "u" and arr.dtype.itemsize == 1:
        return arr
    if kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InputError(f"integer pixels must lie in 0..255, got {arr.min()}..{arr.max()} ({arr.dtype})")
        return arr.astype(np.uint8)
    if kind == "f":
        if not np.isfinite(arr).all():
            raise InputError(f"pixels contain NaN or infinity ({arr.dtype}, shape {arr.shape})")
        lo, hi = float(arr.min()), float(arr.max())
        if lo < 0.0 or hi > 1.0:
            raise InputError(f"float pixels must lie in [0, 1], got {lo:.3g}..{hi:.3g}; scale 0..255 data by 1/255")
        return np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    raise InputError(f"unsupported pixel type {arr.dtype} (use uint8 0..255 or float 0..1)")


# --------------------------------------------------------------------------- decoding files and bytes


def decode(data: bytes) -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, WebP, …) -> a 28x28 digit, with size and pixel limits."""
    if not data:
        raise InputError("empty file (0 bytes)")
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"file too large: {len(data):,} bytes (limit {MAX_FILE_BYTES:,})")
    try:
        with Image.open(io.BytesIO(data), formats=formats.decoders(data)) as img:
            width, height = img.size
            if _holds_several_pictures(img):
                raise InputError(
                    f"several pictures in one {img.format} file (pages or animation frames): "
                    "give one digit per image (save each as its own file)"
                )
            if img.format in ("JPEG", "MPO"):  # MPO: a JPEG with more pictures after it (a phone's HDR gain map)
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the photo is much larger than needed;
                # the limit is on what is decoded, so a 64 MP phone JPEG (decoded 1156x867) is read.
                img.draft("RGB", (WORK_SIZE, WORK_SIZE))
            if img.size[0] * img.size[1] > MAX_PIXELS:
                raise InputError(f"image too large: {width}x{height} pixels (limit {MAX_PIXELS:,})")
            img.load()
            return normalize_image(img)
    except InputError:
        raise
    except Image.UnidentifiedImageError as exc:
        kind = formats.sniff(data)
        if kind:
            raise InputError(f"corrupt {kind} file: Pillow cannot decode it") from exc
        raise InputError(f"not a supported image ({formats.NAMES})") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"image too large (decompression bomb guard): {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt data surfaces from load() as OSError / SyntaxError / ValueError.
        raise InputError(f"corrupt or truncated image: {exc}") from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow's parsers raise many kinds of exception on damaged bytes
        if not _raised_in_a_decoder(exc):
            raise  # a bug of ours: load_item names it "unexpected", never "corrupt"
        raise InputError(f"corrupt or truncated image: {exc!r}") from exc


def _holds_several_pictures(img: Image.Image) -> bool:
    """Whether the file holds more than one picture that could be the digit: a multi-page scan's
    pages, an animation's frames, a HEIF collection's images. Reading only the first would answer for
    one and lose the rest. Not counted: an MPO's pictures after the first (a phone's HDR gain map, a
    stereo twin) and a TIFF's reduced-resolution pages (previews, NewSubfileType bit 0). Looks at no
    more than the first ``TIFF_PAGES_LOOKED_AT`` pages: walking a file's thousands of pages would cost
    seconds."""
    if img.format == "MPO" or not getattr(img, "is_animated", False):
        return False
    if not isinstance(img, TiffImagePlugin.TiffImageFile):
        return True
    pages = 0
    try:
        for index in range(TIFF_PAGES_LOOKED_AT):
            img.seek(index)
            pages += not int(img.tag_v2.get(254, 0)) & 1
            if pages > 1:
                return True
    except EOFError:  # past the last page
        pass
    finally:
        img.seek(0)
    return False


def _raised_in_a_decoder(exc: BaseException) -> bool:
    """Whether ``exc`` came out of Pillow's or pillow-heif's code, where it means damaged bytes, not
    a bug of ours. Found by fuzzing: Pillow's AVIF reader raises ``RuntimeError`` (from its C part,
    under the plugin's frame), its TIFF reader ``TypeError`` or ``KeyError`` for a page's damaged
    tags, its GIF reader ``IndexError`` or ``struct.error`` for a file cut after its first frame."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "") if tb is not None else ""
    return module.startswith(("PIL.", "pillow_heif."))


def read_file(path: str | os.PathLike[str]) -> bytes:
    try:
        if os.path.isdir(path):
            raise IsADirectoryError(path)
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"file too large: {size:,} bytes (limit {MAX_FILE_BYTES:,})")
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise InputError("no such file") from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory") from exc
    except PermissionError as exc:
        raise InputError("permission denied") from exc
    except OSError as exc:
        raise InputError(f"cannot read file: {exc.strerror or exc}") from exc


def decode_file(path: str | os.PathLike[str]) -> np.ndarray:
    """One image file -> a 28x28 digit, whatever its name says (raises ``InputError``)."""
    return decode(read_file(path))


def normalize(image: Any) -> np.ndarray:
    """One image of any supported single-image kind -> a 28x28 digit (raises ``InputError``)."""
    items = list(expand(image))
    if len(items) != 1:
        raise InputError(f"expected one image, got {len(items)}")
    return items[0].load()


def fetch_url(url: str, *, private: bool = True) -> bytes:
    """Download an http(s) image (``downloads.fetch``: ``MAX_FILE_BYTES``, deadlines; ``private=False``
    refuses addresses that are not public). requests loads only when a URL is given."""
    from digitcloud import downloads

    return downloads.fetch(url, limit=MAX_FILE_BYTES, private=private)


# --------------------------------------------------------------------------- expanding user arguments


def list_image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The image files directly in ``folder``, by name; other files are ignored."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in formats.IMAGE_SUFFIXES and not p.is_dir())


def _is_url(text: str) -> bool:
    return text[:8].lower().startswith(("http://", "https://"))


def _is_torch_tensor(obj: Any) -> bool:
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "detach")


def _is_dataframe(obj: Any) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "to_numpy") and not isinstance(obj, np.ndarray)


def is_batch(images: Any) -> bool:
    """Whether ``images`` names many images (list out) rather than one (one result out).

    Decided by the kind of input, never by how many images it turns out to hold.
    """
    if isinstance(images, (str, os.PathLike)):
        text = os.fspath(images)
        if _is_url(text):
            return False
        return (
            os.path.isdir(text) or text.lower().endswith(".csv") or (not os.path.exists(text) and glob.has_magic(text))
        )
    if isinstance(images, (bytes, bytearray, memoryview, Image.Image)) or hasattr(images, "read"):
        return False
    if _is_torch_tensor(images):
        return _array_layout(tuple(images.shape), torch_order=True) != "image"
    if isinstance(images, np.ndarray):
        return _array_layout(images.shape, torch_order=False) != "image"
    return _is_dataframe(images) or isinstance(images, Iterable)


def _array_layout(shape: tuple[int, ...], torch_order: bool) -> str:
    """'image', 'batch' (N, H, W), 'batch-channels' (N, C, H, W / N, H, W, C) or 'rows' (N, 784).

    Any (N, 784) is N Kaggle rows, N = 28 included (no digit photo is 28 x 784 px)."""
    if len(shape) == 2 and shape[1] == KAGGLE_PIXELS:
        return "rows"
    if len(shape) <= 2:
        return "image"
    if len(shape) == 3:
        if torch_order:
            # (1, H, W) is what ToTensor gives for one grey image; any other (N, H, W) is a batch,
            # like MNIST's `.data` tensor. (An RGB image tensor goes in as (1, 3, H, W).)
            return "image" if shape[0] == 1 else "batch"
        # numpy's single image is (H, W, C) with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA)
        # and H > 4; any other 3-d array is a batch (N, H, W), even N = 1.
        return "image" if shape[-1] in CHANNEL_MODES and shape[0] > 4 else "batch"
    return "batch-channels"


def _array_items(arr: np.ndarray, name: str, torch_order: bool) -> Iterator[Item]:
    layout = _array_layout(arr.shape, torch_order)
    if layout == "image":
        if torch_order and arr.ndim == 3:
            arr = np.moveaxis(arr, 0, -1)
        yield Item(f"{name} {arr.shape}", partial(normalize_array, arr))
    elif layout == "rows":
        for i in range(arr.shape[0]):
            yield Item(f"{name}[{i}]", partial(normalize_array, arr[i].reshape(photo.SIZE, photo.SIZE)))
    elif layout == "batch":
        ready = np.zeros(arr.shape[0], dtype=bool)
        if arr.dtype == np.uint8 and arr.shape[1:] == (photo.SIZE, photo.SIZE):
            # The common case (MNIST-style batches): check them all at once, then pass them through.
            ready = photo.mnist_shaped(arr)
        for i in range(arr.shape[0]):
            loader = partial(_passthrough, arr[i]) if ready[i] else partial(normalize_array, arr[i])
            yield Item(f"{name}[{i}]", loader)
    elif arr.ndim == 4:
        for i in range(arr.shape[0]):
            one = np.moveaxis(arr[i], 0, -1) if torch_order else arr[i]
            yield Item(f"{name}[{i}]", partial(normalize_array, one))
    else:
        yield Item(f"{name} {arr.shape}", lambda: _raise(f"cannot read an array of shape {arr.shape} as images"))


def _tensor_array(tensor: Any) -> np.ndarray:
    """A torch tensor as numpy, without importing torch: sparse ones made dense, and dtypes numpy has
    no type for (bfloat16, float8) widened to float32, which holds their values exactly."""
    t = tensor.detach()
    if str(t.layout) != "torch.strided":
        t = t.to_dense()
    t = t.cpu()
    try:
        return np.asarray(t.numpy())
    except TypeError:
        if not t.is_floating_point():
            raise
        return np.asarray(t.float().numpy())


def _passthrough(digit: np.ndarray) -> np.ndarray:
    return digit


def _raise(reason: str) -> np.ndarray:
    raise InputError(reason)


def kaggle_csv_items(path: str | os.PathLike[str]) -> Iterator[Item]:
    """Rows of a Digit Recognizer CSV: ``pixel0..pixel783`` with or without a leading ``label``.

    Blank lines are skipped and not counted: "row N" is the N-th image, Kaggle's ImageId.
    Read lazily, one row at a time, so a 28,000-row test.csv never sits in memory as text. A file
    that stops being readable text (not UTF-8, a field over csv's size limit) ends with one error
    item naming the row; the rows before it are kept.
    """
    name = repr(os.fspath(path))
    try:
        f = open(path, "rb")  # noqa: SIM115  (closed by the `with` below, once the rows are read)
    except OSError as exc:
        reason = f"cannot read CSV: {exc.strerror or exc}"
        yield Item(f"csv {name}", lambda: _raise(reason))
        return
    with f:
        rows = csv.reader(_utf8_lines(f))
        header = _next_row(rows)
        if isinstance(header, InputError):
            yield Item(f"csv {name}", partial(_raise, header.reason))
            return
        if header is None:
            yield Item(f"csv {name}", lambda: _raise("empty CSV file"))
            return
        has_label = bool(header) and header[0].strip().lower() == "label"
        pixel_header = header[1:] if has_label else header
        if len(pixel_header) != KAGGLE_PIXELS or not pixel_header[0].strip().lower().startswith("pixel"):
            columns = len(header)
            yield Item(
                f"csv {name}",
                lambda: _raise(f"not a Digit Recognizer CSV: header needs pixel0..pixel783 (got {columns} columns)"),
            )
            return
        row_number = 0
        while True:
            row = _next_row(rows)
            if row is None:
                return
            if isinstance(row, list) and is_blank_csv_row(row):
                continue  # a blank line (a trailing newline too many): no image, so no row number
            row_number += 1
            if isinstance(row, InputError):
                yield Item(f"csv {name} row {row_number}", partial(_raise, row.reason))
                return
            yield _csv_item(f"csv {name} row {row_number}", row, has_label)


def is_blank_csv_row(row: list[str]) -> bool:
    """A blank line as ``csv.reader`` gives it (``[]``, or one empty or space-only field). A row of
    empty fields (``,,,``) is not blank: it is a row whose values are missing."""
    return len(row) <= 1 and not "".join(row).strip()


def _utf8_lines(f: Any) -> Iterator[str]:
    """A binary file's lines as text, decoded one by one, so bad bytes cost only their own line
    and the rows before them (a byte-order mark at the start is dropped)."""
    for number, line in enumerate(f):
        yield line.decode("utf-8-sig" if number == 0 else "utf-8")


def _next_row(rows: Iterator[list[str]]) -> list[str] | InputError | None:
    """The next CSV row, ``None`` at the end, or the reason the file cannot be read on."""
    try:
        return next(rows)
    except StopIteration:
        return None
    except UnicodeDecodeError as exc:
        return InputError(f"not a text CSV file: byte {exc.start + 1} of this line is not UTF-8")
    except (csv.Error, OSError) as exc:
        return InputError(f"unreadable CSV: {exc}")


def _csv_item(source: str, row: list[str], has_label: bool) -> Item:
    """A CSV row as an item, its text parsed now: 784 bytes held per row, not 784 strings (a 28,000-row
    test.csv held as text took ~450 MB before ``classify`` began). A bad row's error waits for loading."""
    values = row[1:] if has_label else row
    if len(values) != KAGGLE_PIXELS:
        return Item(source, partial(_raise, f"expected {KAGGLE_PIXELS} pixel values, got {len(values)}"))
    try:
        pixels = np.array([int(v) for v in values], dtype=np.int64).reshape(photo.SIZE, photo.SIZE)
    except ValueError as exc:
        return Item(source, partial(_raise, f"pixel values must be integers 0..255 ({exc})"))
    if pixels.min() >= 0 and pixels.max() <= 255:
        pixels = pixels.astype(np.uint8)  # out-of-range rows stay as they are, for normalize_array to name
    return Item(source, partial(normalize_array, pixels))


def expand(images: Any, *, private_urls: bool = True) -> Iterator[Item]:
    """One ``Item`` per image named by ``images``, lazily and in order (see the README's table).
    ``private_urls=False``: a URL is downloaded only from a public address (``downloads``)."""
    if isinstance(images, (str, os.PathLike)):
        yield from _path_items(images, private_urls)
    elif isinstance(images, (bytes, bytearray, memoryview)):
        data = bytes(images)
        yield Item(f"bytes ({len(data):,} B)", lambda: decode(data), encoded=True)
    elif isinstance(images, Image.Image):
        yield Item(f"PIL image {images.mode} {images.size[0]}x{images.size[1]}", lambda: _pil(images))
    elif hasattr(images, "read"):
        yield Item(_file_name(images), lambda: decode(_read_stream(images)))
    elif _is_torch_tensor(images):
        try:
            arr = _tensor_array(images)
        except Exception as exc:  # a layout or device numpy cannot see (meta, quantized…): name it
            reason = f"cannot read this tensor ({images.dtype}, {images.layout}): {type(exc).__name__}: {exc}"
            yield Item(f"tensor {tuple(images.shape)}", partial(_raise, reason))
        else:
            yield from _array_items(arr, "tensor", torch_order=True)
    elif isinstance(images, np.ndarray):
        yield from _array_items(images, "array", torch_order=False)
    elif _is_dataframe(images):
        yield from _array_items(np.asarray(_dataframe_pixels(images)), "dataframe", torch_order=False)
    elif isinstance(images, Iterable):
        for element in _elements(images):
            if isinstance(element, _Failed):
                yield Item(element.source, partial(_raise, element.reason))
            elif isinstance(element, (list, tuple)):
                # A list inside a list is a mistake more often than a batch: name it, don't guess.
                kind = type(element).__name__
                yield Item(f"nested {kind}", lambda: _raise("a list inside the list is not an image; flatten it"))
            else:
                yield from expand(element, private_urls=private_urls)
    else:
        kind = type(images).__name__
        yield Item(kind, lambda: _raise(f"unsupported input type {kind}"))


@dataclass(frozen=True)
class _Failed:
    """Where iterating the user's iterable raised, and why."""

    source: str
    reason: str


def _elements(images: Iterable[Any]) -> Iterator[Any]:
    """The iterable's elements; if it raises (a generator whose file vanished, say), one ``_Failed``
    for that point, and nothing after it: the elements already read still get their answers."""
    kind, read = type(images).__name__, 0
    try:
        for element in images:
            yield element
            read += 1
    except Exception as exc:
        reason = f"the {kind} of inputs raised {type(exc).__name__}: {exc}; nothing after it was read"
        yield _Failed(f"{kind} element {read}", reason)


def _pil(img: Image.Image) -> np.ndarray:
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise InputError(f"image too large: {width}x{height} pixels (limit {MAX_PIXELS:,})")
    return normalize_image(img)


def _dataframe_pixels(frame: Any) -> Any:
    columns = [str(c) for c in frame.columns]
    pixels = [c for c in columns if c.startswith("pixel")]
    if len(pixels) == KAGGLE_PIXELS:
        return frame[pixels].to_numpy()
    return frame.to_numpy()


def _file_name(f: Any) -> str:
    name = getattr(f, "name", None)
    return f"file {name!r}" if isinstance(name, str) else f"file object {type(f).__name__}"


def _read_stream(f: Any) -> bytes:
    data = f.read(MAX_FILE_BYTES + 1)
    if isinstance(data, str):
        raise InputError("file is open in text mode; open it with 'rb'")
    if len(data) > MAX_FILE_BYTES:
        raise InputError(f"file too large: over {MAX_FILE_BYTES:,} bytes")
    return bytes(data)


def _path_items(path: str | os.PathLike[str], private_urls: bool) -> Iterator[Item]:
    text = os.fspath(path)
    if _is_url(text):
        download = partial(fetch_url, text, private=private_urls)
        yield Item(f"url {text!r}", lambda: decode(download()), download, encoded=True)
    elif os.path.isdir(text):
        files = list_image_files(text)
        if not files:
            yield Item(f"directory {text!r}", lambda: _raise("no image files in this directory"))
        for file in files:
            yield Item(repr(str(file)), partial(decode_file, file), encoded=True)
    elif text.lower().endswith(".csv"):
        yield from kaggle_csv_items(text)
    elif not os.path.exists(text) and glob.has_magic(text):
        matches = sorted(m for m in glob.glob(text, recursive=True) if Path(m).suffix.lower() in formats.IMAGE_SUFFIXES)
        if not matches:
            yield Item(f"glob {text!r}", lambda: _raise("no image files match this pattern"))
        for match in matches:
            yield Item(repr(match), partial(decode_file, match), encoded=True)
    else:
        yield Item(repr(text), partial(decode_file, text), encoded=True)


@dataclass(frozen=True)
class Loaded:
    """An item after loading: its digit, or the error that names it."""

    index: int
    source: str
    digit: np.ndarray | None
    error: InputError | None


def load_item(index: int, item: Item, loader: Callable[[], np.ndarray] | None = None) -> Loaded:
    """``item`` loaded (by ``loader`` in place of its own, when given), or the error naming it."""
    try:
        digit = (loader or item.load)()
    except InputError as exc:
        return Loaded(index, item.source, None, exc.at(index, item.source))
    except Exception as exc:
        reason = f"unexpected {type(exc).__name__} while reading: {exc}"
        return Loaded(index, item.source, None, InputError(reason, index=index, source=item.source))
    return Loaded(index, item.source, digit, None)


def load_items(items: Iterable[Item], start: int = 0) -> list[Loaded]:
    """Load each item; errors stay in place as values so every item has exactly one outcome.

    URLs are downloaded up to ``DOWNLOADS_AHEAD`` at once, ahead of the items being decoded (a
    download mostly waits on the server; ``batching.prefetched``, so Ctrl-C never waits on one),
    and encoded images are decoded ``DECODE_THREADS`` at a time (Pillow and numpy release the GIL:
    1.7-1.9x on 2 cores); so at most that many downloaded files, and that many decodes, are held at
    once. Other items (arrays, PIL images, file objects) are cheap or the caller's own, and load one
    at a time.
    """
    items = list(items)
    ahead = min(DOWNLOADS_AHEAD, sum(item.download is not None for item in items))
    threads = min(DECODE_THREADS, sum(item.encoded for item in items))
    loaders = prefetched(_downloaded, items, ahead)
    jobs = zip(range(start, start + len(items)), items, loaders, strict=True)
    # Encoded items are loaded on the threads; the rest here, in order, one at a time.
    return [loaded or load_item(*job) for job, loaded in ordered_map(_decoded, jobs, threads)]


_Job = tuple[int, Item, "Callable[[], np.ndarray] | None"]


def _decoded(job: _Job) -> tuple[_Job, Loaded | None]:
    """An encoded item loaded (on a decoding thread); any other is left for the caller's thread."""
    index, item, loader = job
    return job, (load_item(index, item, loader) if item.encoded else None)


def _downloaded(item: Item) -> Callable[[], np.ndarray] | None:
    """For a URL item: its bytes fetched now, and how to decode them (or re-raise the fetch's error)."""
    if item.download is None:
        return None
    try:
        data = item.download()
    except Exception as exc:
        return partial(_reraise, exc)
    return partial(decode, data)


def _reraise(exc: Exception) -> np.ndarray:
    raise exc


def stack(loaded: Iterable[Loaded]) -> np.ndarray:
    """The successfully loaded digits as one uint8 ``[N, 28, 28]`` array."""
    digits = [x.digit for x in loaded if x.digit is not None]
    if not digits:
        return np.zeros((0, photo.SIZE, photo.SIZE), dtype=np.uint8)
    return np.stack(digits)
