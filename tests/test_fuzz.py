"""Fuzzing the two places where outside bytes become data: the input decoder and the output parser.

Whatever goes in — arbitrary bytes, mutated PNG/JPEG/WebP/GIF/TIFF/BMP/PNM encodings, numpy arrays
of any dtype and shape, .npy/.npz batch files with lying headers, CSV text, HTTP answers, JSON —
comes out as a result or as an error from the ``DigitCloudError`` tree: never another exception,
never a hang (each example runs under a SIGALRM limit), never an allocation sized by what a header
claims (tracemalloc, and ``ru_maxrss`` in a child process for Pillow's own buffers).

Regressions the fuzzers found are at the end, each with the input that showed it.
The longer-running fuzzer is ``bench/fuzz_decoder.py`` (atheris), outside the default run.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.server
import io
import json
import math
import signal
import struct
import subprocess
import sys
import threading
import tracemalloc
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from digitcloud import contract, digits_file, downloads, inputs
from digitcloud.errors import CloudError, InputError
from digitcloud.model import prediction_entries
from tests.synthetic import draw_digit, encode, files_of_several_pictures, tiff_with_previews

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SECONDS = 10  # one example past this is a hang
FUZZ = settings(
    max_examples=300,
    deadline=None,  # the SIGALRM limit below is the hang guard; wall time on 2 shared cores varies
    database=None,  # no .hypothesis/ folder in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


class Hang(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` in the code under test hides it."""


@contextlib.contextmanager
def time_limit(seconds: float = EXAMPLE_SECONDS) -> Iterator[None]:
    def alarm(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def no_numeric_warnings() -> Iterator[None]:
    """Pillow may warn about a corrupt file (the user sees it, decoding goes on); a RuntimeWarning
    from numpy means our own arithmetic overflowed or took a NaN, which is a bug."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    # Pillow's DecompressionBombWarning (a RuntimeWarning) comes before our own, lower, pixel limit
    numeric = [
        w for w in caught if issubclass(w.category, RuntimeWarning) and w.category is not Image.DecompressionBombWarning
    ]
    assert not numeric, [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in numeric]


def digit_or_input_error(load: Callable[[], np.ndarray]) -> InputError | None:
    """Run ``load``; it must return a 28x28 uint8 digit or raise ``InputError`` (anything else fails)."""
    with time_limit(), no_numeric_warnings():
        try:
            digit = load()
        except InputError as exc:
            assert str(exc) and not exc.reason.startswith("unexpected"), exc
            return exc
    assert isinstance(digit, np.ndarray) and digit.shape == (28, 28) and digit.dtype == np.uint8
    return None


# ----------------------------------------------------------------------------- seeds: real encodings


def _seed_images() -> dict[str, bytes]:
    rng = np.random.default_rng(11)
    digit = draw_digit(3, rng, size=40)
    rgba = Image.new("RGBA", digit.size, (0, 0, 0, 0))
    rgba.putalpha(digit)
    grey = np.asarray(digit, dtype=np.float32)
    return {
        "png": encode(digit, "PNG"),
        "png-rgba": encode(rgba, "PNG"),
        "png-p": encode(digit.convert("P"), "PNG"),
        "png-16": encode(digit.convert("I;16"), "PNG"),
        "png-exif": encode(digit, "PNG", exif_orientation=6),
        "jpeg": encode(digit.convert("RGB"), "JPEG", quality=80),
        "jpeg-progressive": encode(digit, "JPEG", progressive=True, exif_orientation=3),
        "webp": encode(digit, "WEBP", quality=80),
        "webp-lossless": encode(rgba, "WEBP", lossless=True),
        "gif": encode(digit, "GIF"),
        "tiff": encode(digit, "TIFF"),
        "tiff-deflate": encode(digit, "TIFF", compression="tiff_adobe_deflate"),
        "tiff-float": encode(Image.fromarray(grey / 255.0, mode="F"), "TIFF"),
        "bmp": encode(digit, "BMP"),
        "pgm": encode(digit, "PPM"),
        "ppm": encode(digit.convert("RGB"), "PPM"),
        "avif": encode(digit, "AVIF", quality=80, exif_orientation=6),
        "heic": encode(digit, "HEIC", quality=80, exif_orientation=6),  # pillow-heif (dev extra) encodes
        "tiff-previews": tiff_with_previews(digit, 20, 10),  # decode walks past the previews to find no second page
    }


def _several_pictures() -> dict[str, bytes]:
    """Files of several pictures, each an error naming that; mutated, they exercise the page walk."""
    digit = draw_digit(5, np.random.default_rng(12), size=40)
    return files_of_several_pictures(digit, digit.rotate(15), digit.rotate(30))


SEEDS = _seed_images()
SEVERAL = _several_pictures()
ISO_MEDIA = [b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"]  # HEIC, AVIF
HEADER_WORDS = [b"\xff\xff\xff\xff", b"\x7f\xff\xff\xff", b"\x00\x00\x00\x00", b"\x00\x01\x00\x00", b"\x80\x00"]


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real encoding with a few edits, biased towards the header where the sizes live."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.one_of(st.integers(0, min(63, len(data) - 1)), st.integers(0, len(data) - 1)))
        op = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete", "word"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[at] = draw(st.integers(0, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 32))]
        else:
            data[at : at + 4] = draw(st.sampled_from(HEADER_WORDS))
    return bytes(data)


# ----------------------------------------------------------------------------- the image decoder


def test_every_seed_decodes() -> None:
    # the mutation fuzzer starts from encodings that work: check they do, and that the files of
    # several pictures it also starts from are each refused as such
    for name, data in SEEDS.items():
        assert digit_or_input_error(functools.partial(inputs.decode, data)) is None, name
    for name, data in SEVERAL.items():
        error = digit_or_input_error(functools.partial(inputs.decode, data))
        assert error is not None and "several pictures" in error.reason, name


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_a_digit_or_an_input_error(data: bytes) -> None:
    digit_or_input_error(lambda: inputs.decode(data))


@settings(FUZZ, max_examples=500)
@given(mutated([*SEEDS.values(), *SEVERAL.values()]))
def test_mutated_encodings_give_a_digit_or_an_input_error(data: bytes) -> None:
    digit_or_input_error(lambda: inputs.decode(data))


@FUZZ
@given(
    magic=st.sampled_from(
        [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"P5\n", *ISO_MEDIA]
    ),
    rest=st.binary(max_size=512),
)
def test_a_format_signature_then_junk(magic: bytes, rest: bytes) -> None:
    # given bytes that claim a format and then say anything
    error = digit_or_input_error(lambda: inputs.decode(magic + rest))
    # then the error (there nearly always is one) says what went wrong in words
    assert error is None or error.reason


def _png(width: int, height: int, mode_bits: tuple[int, int] = (8, 0), idat: bytes = b"") -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, *mode_bits, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat or zlib.compress(b"\0" * 64))


@FUZZ
@given(
    width=st.integers(1, 2**31 - 1),
    height=st.integers(1, 2**31 - 1),
    mode_bits=st.sampled_from([(8, 0), (16, 0), (8, 2), (8, 6), (1, 0), (8, 3)]),
)
def test_png_headers_declaring_any_size_are_refused_or_decoded_cheaply(
    width: int, height: int, mode_bits: tuple[int, int]
) -> None:
    # given a tiny PNG whose header declares any size
    data = _png(width, height, mode_bits)
    # then: a digit or a named error, and nothing the size of the declared image was allocated
    tracemalloc.start()
    try:
        error = digit_or_input_error(lambda: inputs.decode(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if width * height > inputs.MAX_PIXELS:
        assert error is not None and "too large" in error.reason
    assert peak < 64 * 2**20


_RSS_PROBE = r"""
import json, resource, struct, sys, zlib
from digitcloud import digits_file, inputs
from digitcloud.errors import InputError

def png(width, height):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))

def npy(count):
    header = "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, 28, 28), }" % count
    header = header.ljust(118) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 100

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

case, path = sys.argv[1], sys.argv[2]
try:
    inputs.decode(png(40, 40))  # warm-up: Pillow's plugins load before the measurement
except InputError:
    pass
before = peak_mb()
outcomes = []
if case == "claims":
    for size in [(100_000, 100_000), (9000, 9000), (50_000, 1001), (2**31 - 1, 1), (1, 2**31 - 1)]:
        try:
            outcomes.append(str(inputs.decode(png(*size)).shape))
        except InputError as exc:
            outcomes.append(exc.reason)
    for count in (250_000, 10**12):
        with open(path, "wb") as f:
            f.write(npy(count))
        try:
            outcomes.append(str(digits_file.read_digits_file(path).shape))
        except InputError as exc:
            outcomes.append(exc.reason)
else:
    outcomes.append(str(inputs.decode(open(path, "rb").read()).shape))
print(json.dumps({"growth_mb": peak_mb() - before, "outcomes": outcomes}))
"""


def _rss_growth(case: str, path: Path) -> tuple[float, list[str]]:
    """Run the probe in a fresh interpreter: ``ru_maxrss`` only ever rises, so a process of its own
    is the way to see what one decode costs (Pillow's buffers are invisible to tracemalloc)."""
    out = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, case, str(path)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    return float(report["growth_mb"]), list(report["outcomes"])


def test_declared_sizes_are_refused_before_any_buffer_is_allocated(tmp_path: Path) -> None:
    # given PNGs declaring up to 10 gigapixels and a 100-byte .npy declaring 250,000 digits (196 MB)
    # when they are read in a fresh process
    growth, outcomes = _rss_growth("claims", tmp_path / "claims.npy")
    # then each is a named error and the process's peak memory barely moves
    assert len(outcomes) == 7
    assert all("too large" in o for o in outcomes[:3] + outcomes[-1:]), outcomes
    assert all(not o.startswith("(") for o in outcomes), outcomes
    assert growth < 40, f"peak RSS grew {growth:.0f} MB"


def _decoding_growth(tmp_path: Path, size: tuple[int, int], fmt: str, **params: Any) -> float:
    """A white grey picture of ``size`` with a black block for ink, saved as ``fmt`` and decoded
    in a fresh process: how much its peak RSS grew (it must give a digit)."""
    img = Image.new("L", size, 255)
    img.paste(0, (size[0] * 3 // 7, size[1] * 3 // 7, size[0] * 4 // 7, size[1] * 3 // 5))
    path = tmp_path / f"big.{fmt.lower()}"
    img.save(path, fmt, **params)
    del img
    growth, outcomes = _rss_growth("decode", path)
    assert outcomes == ["(28, 28)"]
    return growth


@pytest.mark.slow
def test_a_photo_at_the_pixel_limit_is_decoded_without_a_second_full_copy(tmp_path: Path) -> None:
    # a 49 MP grey PNG (49 MB of pixels once decoded): the peak stays near one copy of the pixels,
    # not three (exif_transpose's copy and thumbnail's copy made it 143 MB)
    growth = _decoding_growth(tmp_path, (7000, 7000), "PNG", compress_level=1)
    assert growth < 49 * 1.5, f"peak RSS grew {growth:.0f} MB for a 49 MB image"


@pytest.mark.slow
def test_a_64_megapixel_phone_jpeg_is_decoded_small(tmp_path: Path) -> None:
    # a JPEG the size of a 64 MP phone mode (9248x6936), over the 50 MP limit: libjpeg decodes it
    # at 1/8 scale (1156x867, 1 MB), which the limit is on, so the peak stays far under 64 MB
    growth = _decoding_growth(tmp_path, (9248, 6936), "JPEG", quality=80)
    assert growth < 20, f"peak RSS grew {growth:.0f} MB"


# ----------------------------------------------------------------------------- arrays, PIL images, tensors

PIXEL_DTYPES = [
    np.uint8,
    np.int8,
    np.uint16,
    np.int16,
    np.int32,
    np.uint64,
    np.int64,
    np.float16,
    np.float32,
    np.float64,
    np.longdouble,
    np.bool_,
    np.complex64,
]


@st.composite
def any_array(draw: st.DrawFn) -> np.ndarray:
    dtype: np.dtype[Any] = np.dtype(draw(st.sampled_from(PIXEL_DTYPES)))
    shape = draw(
        st.one_of(
            hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6),
            st.tuples(st.integers(1, 80), st.integers(1, 80)),  # one image
            st.tuples(st.integers(0, 3), st.just(28), st.just(28)),  # a batch
            st.tuples(st.integers(5, 40), st.integers(5, 40), st.sampled_from([1, 2, 3, 4])),  # H, W, C
            st.tuples(st.integers(0, 3), st.just(784)),  # Kaggle rows
        )
    )
    if dtype.kind in "fc":
        # finite pixels in range mostly, with NaN, inf, negatives and huge values thrown in
        elements = st.one_of(st.floats(0, 1, width=16), hnp.from_dtype(dtype))
    elif dtype.kind in "iu":
        elements = st.one_of(st.integers(0, min(255, int(np.iinfo(dtype).max))), hnp.from_dtype(dtype))
    else:
        elements = hnp.from_dtype(dtype)
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _check_expansion(value: Any, shape: tuple[int, ...]) -> None:
    with time_limit():
        items = list(inputs.expand(value))  # expanding never raises: problems wait in the items
    if not inputs.is_batch(value):
        assert len(items) == 1
    elif len(shape) in (3, 4):
        assert len(items) == shape[0]
    for item in items:
        digit_or_input_error(item.load)
    loaded = inputs.load_items(items)
    assert [x.index for x in loaded] == list(range(len(items)))
    assert all((x.digit is None) != (x.error is None) for x in loaded)


@FUZZ
@given(any_array())
def test_any_numpy_array_gives_digits_or_named_errors(arr: np.ndarray) -> None:
    _check_expansion(arr, arr.shape)


@settings(FUZZ, max_examples=100)
@given(any_array())
def test_any_torch_tensor_gives_digits_or_named_errors(arr: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    if arr.dtype in (np.uint16, np.uint64, np.longdouble):
        arr = arr.astype(np.float64)  # dtypes torch has no tensor for
    tensor = torch.from_numpy(arr.copy())
    _check_expansion(tensor, tuple(tensor.shape))


TORCH_ONLY = ["bfloat16", "float8_e4m3fn", "float8_e5m2", "uint16", "uint32", "sparse", "requires_grad", "bool"]


@pytest.mark.parametrize("kind", TORCH_ONLY)
def test_tensors_numpy_cannot_hold_are_read_or_named(kind: str) -> None:
    torch = pytest.importorskip("torch")
    base = torch.zeros(2, 28, 28)
    base[:, 8:20, 12:15] = 0.9  # a stroke, so a readable tensor gives a digit
    if kind == "sparse":
        tensor = base.to_sparse()
    elif kind == "requires_grad":
        tensor = base.clone().requires_grad_(True)
    elif hasattr(torch, kind):
        tensor = base.to(getattr(torch, kind))
    else:
        pytest.skip(f"torch {torch.__version__} has no {kind}")
    _check_expansion(tensor, tuple(tensor.shape))


@st.composite
def any_pil_image(draw: st.DrawFn) -> Image.Image:
    mode = draw(st.sampled_from(["F", "I", "I;16", "L", "LA", "RGB", "RGBA", "P", "1", "CMYK", "YCbCr", "HSV"]))
    size = (draw(st.integers(1, 64)), draw(st.integers(1, 64)))
    if mode == "F":
        values = st.floats(width=32)  # NaN, inf, -1e38…
        arr = draw(hnp.arrays(np.float32, size[::-1], elements=values))
        return Image.fromarray(arr, mode="F")
    if mode == "I":
        arr = draw(hnp.arrays(np.int32, size[::-1], elements=hnp.from_dtype(np.dtype(np.int32))))
        return Image.fromarray(arr, mode="I")
    img = Image.new(mode, size)
    raw = draw(st.binary(min_size=len(img.tobytes()), max_size=len(img.tobytes())))
    img.frombytes(raw)
    return img


@FUZZ
@given(any_pil_image())
def test_any_pil_image_gives_a_digit_or_a_named_error(img: Image.Image) -> None:
    _check_expansion(img, ())


@FUZZ
@given(st.lists(st.sampled_from(list(SEEDS.values())) | st.binary(max_size=64), max_size=6))
def test_a_list_of_good_and_bad_bytes_keeps_one_outcome_per_item_in_order(items: list[bytes]) -> None:
    loaded = inputs.load_items(inputs.expand(items))
    assert [x.index for x in loaded] == list(range(len(items)))
    for x, data in zip(loaded, items, strict=True):
        if data in SEEDS.values():
            assert x.error is None, x.error


# ----------------------------------------------------------------------------- Kaggle CSV files


@FUZZ
@given(
    header=st.sampled_from(
        ["label," + ",".join(f"pixel{i}" for i in range(784)), ",".join(f"pixel{i}" for i in range(784))]
    ),
    body=st.one_of(st.binary(max_size=3000), st.text(max_size=3000).map(str.encode)),
)
def test_csv_with_any_body_gives_one_outcome_per_row(
    tmp_path_factory: pytest.TempPathFactory, header: str, body: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / "fuzz.csv"
    path.write_bytes(header.encode() + b"\n" + body)
    with time_limit():
        items = list(inputs.expand(str(path)))
    for item in items:
        digit_or_input_error(item.load)


@FUZZ
@given(st.binary(max_size=2000))
def test_csv_of_any_bytes_gives_named_errors(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.getbasetemp() / "junk.csv"
    path.write_bytes(data)
    with time_limit():
        items = list(inputs.expand(str(path)))
    assert items
    for item in items:
        digit_or_input_error(item.load)


# ----------------------------------------------------------------------------- batch files (.npy / .npz)


def _batch(n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(n)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


BATCH_SEEDS = [
    digits_file.write_digits_file(_batch(3)),
    digits_file.write_digits_file(_batch(2), compressed=True),
]


def _npy(header: str, version: tuple[int, int], data: bytes) -> bytes:
    raw = header.encode("latin1" if version == (1, 0) else "utf8", errors="replace")
    size_format = "<H" if version == (1, 0) else "<I"
    return b"\x93NUMPY" + bytes(version) + struct.pack(size_format, len(raw)) + raw + data


header_values = st.one_of(
    st.tuples(st.integers(-(2**63), 2**63), st.just(28), st.just(28)),
    st.tuples(st.integers(0, 300_000), st.integers(0, 2**40), st.integers(-2, 30)),
    st.lists(st.integers(-5, 2**62), max_size=5).map(tuple),
    st.just(()),
)


@st.composite
def npy_file(draw: st.DrawFn) -> bytes:
    shape = draw(header_values)
    descr = draw(st.sampled_from(["|u1", "<u1", "<i8", "<f4", "|b1", "|O", "<U3", "|V4", "[('a', '<u1')]", "'junk'"]))
    fortran = draw(st.sampled_from(["False", "True", "1", "None"]))
    quoted = descr if descr.startswith(("[", "'")) else repr(descr)
    header = f"{{'descr': {quoted}, 'fortran_order': {fortran}, 'shape': {shape!r}, }}"
    header = draw(st.one_of(st.just(header), st.text(max_size=200)))
    header = header.ljust(118) + "\n"
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (9, 9)]))
    data = draw(st.one_of(st.binary(max_size=256), st.just(b"\x07" * 784 * 2)))
    return _npy(header, version, data)


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buf.getvalue()


@st.composite
def npz_file(draw: st.DrawFn) -> bytes:
    names = draw(st.lists(st.sampled_from(["digits.npy", "arr_0.npy", "x.npy", "notes.txt"]), max_size=3, unique=True))
    members = {name: draw(st.one_of(npy_file(), st.sampled_from(BATCH_SEEDS[:1]))) for name in names}
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]))
    return _zip(members, method)


def _read_batch(path: Path, data: bytes) -> None:
    """``read_digits_file`` gives uint8 [N, 28, 28] or an ``InputError``, allocating at most about the
    file's size (a header's claims cost nothing)."""
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with time_limit(), no_numeric_warnings():
            try:
                batch = digits_file.read_digits_file(path)
            except InputError as exc:
                assert exc.reason
                batch = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    if batch is not None:
        assert batch.dtype == np.uint8 and batch.ndim == 3 and batch.shape[1:] == (28, 28) and len(batch) >= 1
        assert batch.flags.writeable
    assert peak < 4 * len(data) + 2**20, f"{peak:,} B allocated for a {len(data):,} B file"


@FUZZ
@given(st.one_of(npy_file(), npz_file(), mutated(BATCH_SEEDS), st.binary(max_size=512)))
def test_any_batch_file_gives_digits_or_an_input_error(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _read_batch(tmp_path_factory.getbasetemp() / "batch.bin", data)


def test_batch_seed_files_round_trip(tmp_path: Path) -> None:
    for n, data in zip((3, 2), BATCH_SEEDS, strict=True):
        path = tmp_path / "b.npz"
        path.write_bytes(data)
        np.testing.assert_array_equal(digits_file.read_digits_file(path), _batch(n))


# ----------------------------------------------------------------------------- URL downloads


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers every GET with whatever the current example scripted: status, headers, body."""

    protocol_version = "HTTP/1.1"
    script: tuple[int, dict[str, str], bytes] = (200, {}, b"")

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        status, headers, body = self.script
        self.send_response_only(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Connection", "close")
        self.end_headers()
        with contextlib.suppress(OSError):
            self.wfile.write(body)


@pytest.fixture(scope="module")
def scripted_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


content_lengths = st.one_of(
    st.none(),
    st.integers(0, 2**70).map(str),
    st.sampled_from(["-1", "²", "½", " 12", "1e3", "0x10", "", "12, 12"]),  # latin-1: what a header can carry
)


@settings(FUZZ, max_examples=120)
@given(
    status=st.sampled_from([200, 200, 200, 204, 206, 301, 404, 500]),
    length=content_lengths,
    encoding=st.sampled_from([None, "gzip", "deflate", "br", "identity", "junk"]),
    body=st.one_of(st.sampled_from([SEEDS["png"], SEEDS["jpeg"]]), st.binary(max_size=512)),
    gzipped=st.booleans(),
)
def test_any_http_answer_to_a_url_input_gives_a_digit_or_an_input_error(
    scripted_server: str, status: int, length: str | None, encoding: str | None, body: bytes, gzipped: bool
) -> None:
    headers = {"Content-Type": "image/png"}
    if length is not None:
        headers["Content-Length"] = length
    if encoding is not None:
        headers["Content-Encoding"] = encoding
        if gzipped and encoding == "gzip":
            body = gzip.compress(body)
    _Scripted.script = (status, headers, body)
    (item,) = inputs.expand(f"{scripted_server}/digit.png")
    digit_or_input_error(item.load)


# ----------------------------------------------------------------------------- the output parser

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=12) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@st.composite
def probabilities(draw: st.DrawFn) -> list[float]:
    weights = draw(st.lists(st.floats(0, 1), min_size=10, max_size=10).filter(lambda w: sum(w) > 0.01))
    total = sum(weights)
    return [w / total for w in weights]


@st.composite
def near_valid_output(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A real output (as predict.py builds it) with at most a couple of entries or fields broken."""
    n = draw(st.integers(0, 6))
    probs = np.array([draw(probabilities()) for _ in range(n)]).reshape(n, 10)
    entries: list[Any] = prediction_entries(probs)
    broken = draw(st.lists(st.integers(0, n - 1), max_size=2, unique=True)) if n else []
    for i in broken:
        entry = dict(entries[i])
        field = draw(st.sampled_from(["digit", "digit", "probabilities", "one probability", "error", "whole"]))
        if field == "whole":
            entries[i] = draw(json_values)
        elif field == "error":
            entries[i] = {"error": draw(json_values)}
        elif field == "one probability":
            values = list(entry["probabilities"])
            values[draw(st.integers(0, 9))] = draw(json_values)
            entries[i] = {**entry, "probabilities": values}
        elif field == "digit":
            entries[i] = {**entry, "digit": draw(st.one_of(st.integers(-1, 10), json_values))}
        else:
            entries[i] = {**entry, field: draw(json_values)}
    output: dict[str, Any] = {"predictions": entries, "weights_sha256": "f" * 64, "request_id": "r"}
    count = draw(st.sampled_from([n, n, n, n + 1, max(0, n - 1)]))
    return output, count


def _parse(output: Any, count: int) -> list[np.ndarray | str] | None:
    with time_limit(), no_numeric_warnings():
        try:
            answers = contract.parse_output(output, count)
        except CloudError as exc:
            assert str(exc)
            return None
    assert len(answers) == count
    for answer in answers:
        if isinstance(answer, str):
            continue
        assert answer.shape == (10,) and answer.dtype == np.float32
        assert np.isfinite(answer).all() and answer.min() >= 0 and answer.max() <= 1
        assert math.isclose(float(answer.sum()), 1.0, abs_tol=2e-3)
    return answers


@settings(FUZZ, max_examples=300)
@given(json_values, st.integers(0, 4))
def test_any_json_output_is_answers_or_a_cloud_error(output: Any, count: int) -> None:
    _parse(output, count)


@settings(FUZZ, max_examples=300)
@given(near_valid_output())
def test_a_damaged_output_is_rejected_whole_or_read_faithfully(case: tuple[dict[str, Any], int]) -> None:
    output, count = case
    answers = _parse(output, count)
    if answers is None:
        return
    # whatever was accepted is what the entries said, entry by entry, never shifted
    for answer, entry in zip(answers, output["predictions"], strict=True):
        if isinstance(answer, str):
            assert set(entry) == {"error"}
        else:
            np.testing.assert_allclose(answer, np.asarray(entry["probabilities"], dtype=np.float32))
            assert type(entry["digit"]) is int and answer[entry["digit"]] == answer.max()


@settings(FUZZ, max_examples=200)
@given(st.integers(0, 8).flatmap(lambda n: st.lists(probabilities(), min_size=n, max_size=n)))
def test_every_output_predict_py_can_build_is_accepted(rows: list[list[float]]) -> None:
    probs = np.array(rows, dtype=np.float32).reshape(len(rows), 10)
    output = {"predictions": prediction_entries(probs), "weights_sha256": "f" * 64, "request_id": None}
    answers = _parse(json.loads(json.dumps(output)), len(rows))
    assert answers is not None
    np.testing.assert_allclose(np.array(answers).reshape(-1, 10), probs, atol=1e-6)


# ----------------------------------------------------------------------------- regressions: what the fuzzers found


def _zip_member(data: bytes, method: int, declared_size: int | None = None) -> bytes:
    blob = bytearray(_zip({"digits.npy": data}, method))
    if declared_size is not None:  # rewrite the central directory's uncompressed size
        at = blob.rfind(b"PK\x01\x02")
        blob[at + 24 : at + 28] = struct.pack("<I", declared_size)
    return bytes(blob)


def _traced_peak(work: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        try:
            outcome: object = work()
        except InputError as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _npy_claiming(count: int, data: bytes = b"\0" * 100) -> bytes:
    return _npy(f"{{'descr': '|u1', 'fortran_order': False, 'shape': ({count}, 28, 28), }}", (1, 0), data)


BAD_BATCH_FILES = {
    # 100 bytes claiming 250,000 digits: read(196 MB) allocated the claim before finding it short
    "npy claiming 196 MB": (_npy_claiming(250_000), "truncated"),
    # numpy's header parser raised tokenize.TokenError (not a ValueError) for an unclosed bracket
    "unclosed header": (_npy("[".ljust(118) + "\n", (1, 0), b""), "corrupt .npy header"),
    # a damaged deflate stream raised zlib.error, which was not caught
    "corrupt deflate": (
        bytes(b ^ 0x55 if 60 <= i < 80 else b for i, b in enumerate(BATCH_SEEDS[1])),
        "corrupt batch file",
    ),
    # an LZMA member: the decoder allocated its header-sized dictionary (8 MB for a 2.5 KB file)
    "lzma member": (_zip_member(BATCH_SEEDS[0], zipfile.ZIP_LZMA), "stored or deflated"),
    "bzip2 member": (_zip_member(BATCH_SEEDS[0], zipfile.ZIP_BZIP2), "stored or deflated"),
    # a stored member whose directory claims 16 MB: that much was allocated up front for 208 bytes
    "member claiming 16 MB": (_zip_member(_npy_claiming(20_000, b""), zipfile.ZIP_STORED, 2**24), "truncated"),
    "npy version 9.9": (_npy("{}".ljust(118) + "\n", (9, 9), b""), "unsupported .npy version"),
    "negative count": (_npy_claiming(-5), "no digits"),
}


@pytest.mark.parametrize("name", list(BAD_BATCH_FILES))
def test_regression_bad_batch_files(tmp_path: Path, name: str) -> None:
    data, expected = BAD_BATCH_FILES[name]
    path = tmp_path / "batch.bin"
    path.write_bytes(data)
    error, peak = _traced_peak(lambda: digits_file.read_digits_file(path))
    assert isinstance(error, InputError) and expected in error.reason, error
    assert peak < 2**20, f"{peak:,} B allocated"


BAD_OUTPUTS = {
    # OverflowError: JSON allows integers beyond float range
    "huge integer": {"digit": 0, "probabilities": [10**400] + [0] * 9},
    # accepted: negative probabilities summing to 1 (confidence 2.0)
    "negative probabilities": {"digit": 0, "probabilities": [2.0, -1.0] + [0.0] * 8},
    # accepted: numpy read strings and booleans as numbers
    "strings": {"digit": 0, "probabilities": ["0.1"] * 10},
    "booleans": {"digit": 0, "probabilities": [True] + [False] * 9},
    # accepted: False is an int to isinstance, so it passed as digit 0 (found by near_valid_output)
    "digit false": {"digit": False, "probabilities": [1.0] + [0.0] * 9},
    # accepted: a digit the probabilities disagree with
    "digit not the argmax": {"digit": 3, "probabilities": [1.0] + [0.0] * 9},
}


@pytest.mark.parametrize("name", list(BAD_OUTPUTS))
def test_regression_bad_output_entries_reject_the_answer(name: str) -> None:
    good = prediction_entries(np.eye(10, dtype=np.float32)[[7]])[0]
    with pytest.raises(CloudError, match="entry 1 is not a valid prediction"):
        contract.parse_output({"predictions": [good, BAD_OUTPUTS[name]]}, 2)


def test_regression_a_huge_error_text_is_cut() -> None:
    (answer,) = contract.parse_output({"predictions": [{"error": "x" * 10**6}]}, 1)
    assert isinstance(answer, str) and len(answer) <= 1001


def test_regression_csv_that_stops_being_utf8(tmp_path: Path) -> None:
    # UnicodeDecodeError escaped expand(), so one binary byte lost the whole call
    header = "label," + ",".join(f"pixel{i}" for i in range(784))
    row = "1," + ",".join(["0"] * 300 + ["200"] * 30 + ["0"] * 454)
    path = tmp_path / "train.csv"
    path.write_bytes(("\ufeff" + header + "\n" + row + "\n").encode() + b"\x80\xff" * 5000)
    loaded = inputs.load_items(inputs.expand(str(path)))
    assert [x.source for x in loaded] == [f"csv {str(path)!r} row 1", f"csv {str(path)!r} row 2"]
    assert loaded[0].error is None  # the byte-order mark did not hide the header
    assert loaded[1].error is not None and "not UTF-8" in loaded[1].error.reason


def test_regression_float_images() -> None:
    # mode F: inf * (255 / inf) gave NaN with a RuntimeWarning; values in [0, 1] looked blank
    stroke = np.zeros((40, 40), dtype=np.float32)
    stroke[8:32, 18:23] = 1.0
    with no_numeric_warnings():
        unit = inputs.normalize(Image.fromarray(stroke, mode="F"))
        grey = inputs.normalize(Image.fromarray((stroke * 255).astype(np.uint8)))
        np.testing.assert_array_equal(unit, grey)
        for bad in (np.inf, np.nan):
            with pytest.raises(InputError, match="NaN or infinity"):
                inputs.normalize(Image.fromarray(np.where(stroke > 0, bad, 0).astype(np.float32), mode="F"))
        with pytest.raises(InputError, match="blank"):
            inputs.normalize(Image.fromarray(np.full((3, 3), -1, dtype=np.int32), mode="I"))
        # a signalling NaN (found by atheris): casting it to float64 raised "invalid value encountered in cast"
        signalling = Image.new("F", (2, 1))
        signalling.frombytes(b"\x01\x00\x80\x7f" + b"\x00\x00\x80\x3f")
        with pytest.raises(InputError, match="NaN or infinity"):
            inputs.normalize(signalling)


def _tiff_entry_retyped(data: bytes, page: int, tag: int, new_type: int) -> bytes:
    """A little-endian TIFF with the field type of one tag on one page (IFD) changed."""
    blob = bytearray(data)
    (ifd,) = struct.unpack_from("<I", blob, 4)
    for _ in range(page):
        (entries,) = struct.unpack_from("<H", blob, ifd)
        (ifd,) = struct.unpack_from("<I", blob, ifd + 2 + 12 * entries)
    (entries,) = struct.unpack_from("<H", blob, ifd)
    for at in range(ifd + 2, ifd + 2 + 12 * entries, 12):
        if struct.unpack_from("<H", blob, at)[0] == tag:
            struct.pack_into("<H", blob, at + 2, new_type)
            return bytes(blob)
    raise LookupError(f"no tag {tag} on page {page}")


def _damaged_files() -> dict[str, bytes]:
    digit = draw_digit(7, np.random.default_rng(0), 64)
    tiff, pages, gif = (
        encode(digit, "TIFF"),
        encode(digit, "TIFF", save_all=True, append_images=[digit]),
        encode(digit, "GIF"),
    )
    return {
        # Pillow's load(): TypeError, the strip offsets typed as text
        "tiff strip offsets as text": _tiff_entry_retyped(tiff, 0, 273, 2),
        # found by mutating multi-page TIFFs once decode looked past the first page: the second
        # page's width of no known type (TypeError "Missing dimensions"), its compression as text (KeyError)
        "tiff page 2 width untyped": _tiff_entry_retyped(pages, 1, 256, 0),
        "tiff page 2 compression as text": _tiff_entry_retyped(pages, 1, 259, 2),
        # found by bench/fuzz_decoder.py once decode asked whether a GIF is animated: its trailer
        # replaced by the start of an extension (IndexError) or of another frame (struct.error)
        "gif cut into an extension": gif[:-1] + b"!",
        "gif cut into a frame": gif[:-1] + b",",
    }


DAMAGED = _damaged_files()


@pytest.mark.parametrize("name", list(DAMAGED))
def test_regression_damage_pillow_reports_oddly_is_corrupt_not_unexpected(name: str) -> None:
    # Pillow reports these with TypeError, KeyError, IndexError or struct.error, which load_item
    # named "unexpected", as for a bug of ours
    with pytest.raises(InputError, match="corrupt or truncated image"):
        inputs.decode(DAMAGED[name])


def test_regression_colour_arrays_have_the_pixel_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # (H, W, 3) arrays skipped the MAX_PIXELS check that (H, W) arrays had
    monkeypatch.setattr(inputs, "MAX_PIXELS", 100)
    with pytest.raises(InputError, match="too large"):
        inputs.normalize_array(np.zeros((20, 20, 3), dtype=np.uint8))


def test_regression_content_length_that_is_digits_to_isdigit_only(scripted_server: str) -> None:
    # "²".isdigit() is True but int("²") raises ValueError: it escaped fetch_url
    _Scripted.script = (200, {"Content-Length": "²"}, SEEDS["png"])
    (item,) = inputs.expand(f"{scripted_server}/digit.png")
    assert digit_or_input_error(item.load) is None


class _Trickle(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        with contextlib.suppress(OSError):
            for _ in range(2000):
                self.wfile.write(b"\0")
                self.wfile.flush()
                threading.Event().wait(0.02)


def test_regression_a_trickling_download_meets_the_overall_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    # one byte every 20 ms never trips the 20 s read timeout; only a deadline on the whole download ends it
    monkeypatch.setattr(downloads, "DEADLINE", 0.5)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with time_limit(5):
            (item,) = inputs.load_items(inputs.expand(f"http://127.0.0.1:{server.server_address[1]}/slow.png"))
    finally:
        server.shutdown()
        server.server_close()
    assert item.error is not None and "too slow" in item.error.reason


def test_regression_big_images_are_shrunk_exactly_like_thumbnail() -> None:
    # shrink() replaced copy() + thumbnail() (a second full-size copy); the result must not change
    rng = np.random.default_rng(0)
    for size in [(4032, 3024), (513, 100), (3, 5000), (1000, 999)]:
        img = Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8))
        expected = img.copy()
        expected.thumbnail((inputs.WORK_SIZE, inputs.WORK_SIZE), Image.Resampling.BOX)
        shrunk = inputs.shrink(img)
        assert shrunk.size == expected.size and shrunk.tobytes() == expected.tobytes(), size
