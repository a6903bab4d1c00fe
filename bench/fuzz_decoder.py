"""Coverage-guided fuzzing (atheris/libFuzzer) of everything that turns outside bytes into data.

    python bench/fuzz_decoder.py -runs=200000          # or -max_total_time=300; any libFuzzer flag
    python bench/fuzz_decoder.py runs/fuzz-corpus      # keep and grow a corpus (runs/ is not committed)

Not part of the test suite (tests/test_fuzz.py runs the hypothesis fuzzers there). The first input
byte picks a target, the rest is its input:

    0  inputs.decode(bytes)                 any image bytes
    1  digits_file.read_digits_file(path)        .npy / .npz batch files
    2  contract.parse_output(json)          a prediction's output, as JSON text
    3  Kaggle CSV rows through expand/load  CSV text or bytes
    4  a numpy array of any dtype/shape     expand + load
    5  a Pillow image in a wide mode        F / I / I;16 with any pixel values

Each must give a result or an ``InputError``/``CloudError``; any other exception is reported as a
crash with the input that caused it. Defaults unless given: ``-timeout=10`` (a hang is an input
that takes longer) and ``-rss_limit_mb=1536`` (a memory blow-up is a crash too). The seed corpus is
the synthetic digit of ``tests/synthetic.py`` in each format (AVIF and HEIC included: the fuzz extra
brings pillow-heif), a real batch file and a real output.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

with atheris.instrument_imports(include=["digitcloud", "PIL", "pillow_heif", "zipfile", "csv"]):
    import numpy as np
    import pillow_heif  # noqa: F401  (the heic extra: instrumented here, registered by the first HEIC)
    from PIL import Image

    from digitcloud import contract, digits_file, inputs
    from digitcloud.errors import CloudError, InputError

    Image.init()  # Pillow imports its format plugins lazily: import them here, instrumented

TARGETS = 6
DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.uint64, np.float16, np.float32, np.float64]
WORK = Path(tempfile.mkdtemp(prefix="digitcloud-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))


def _array(fdp: atheris.FuzzedDataProvider) -> np.ndarray:
    dtype = np.dtype(DTYPES[fdp.ConsumeIntInRange(0, len(DTYPES) - 1)])
    dims = [fdp.ConsumeIntInRange(0, 40) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    raw = fdp.ConsumeBytes(dtype.itemsize * int(np.prod(dims or [1])))
    flat = np.frombuffer(raw[: len(raw) // dtype.itemsize * dtype.itemsize], dtype=dtype)
    return np.resize(flat, dims) if flat.size else np.zeros(dims, dtype=dtype)


def run_one(data: bytes) -> None:
    if not data:
        return
    target, body = data[0] % TARGETS, data[1:]
    if target == 0:
        inputs.decode(body)
    elif target == 1:
        path = WORK / "batch.bin"
        path.write_bytes(body)
        batch = digits_file.read_digits_file(path)
        assert batch.dtype == np.uint8 and batch.shape[1:] == (28, 28), batch.shape
    elif target == 2:
        try:
            output = json.loads(body)
        except (ValueError, RecursionError):
            return  # not JSON: the HTTP layer's job, not the parser's
        for count in (0, 1, 2, 3):
            answers = contract.parse_output(output, count)
            assert len(answers) == count
    elif target == 3:
        path = WORK / "rows.csv"
        path.write_bytes(b"label," + b",".join(b"pixel%d" % i for i in range(784)) + b"\n" + body)
        for item in inputs.expand(str(path)):
            item.load()
    elif target == 4:
        for item in inputs.expand(_array(atheris.FuzzedDataProvider(body))):
            item.load()
    else:
        fdp = atheris.FuzzedDataProvider(body)
        mode = ["F", "I", "I;16"][fdp.ConsumeIntInRange(0, 2)]
        width, height = fdp.ConsumeIntInRange(1, 64), fdp.ConsumeIntInRange(1, 64)
        img = Image.new(mode, (width, height))
        img.frombytes(fdp.ConsumeBytes(len(img.tobytes())).ljust(len(img.tobytes()), b"\0"))
        inputs.normalize(img)


def test_one_input(data: bytes) -> None:
    with warnings.catch_warnings():
        # numpy's RuntimeWarnings are our arithmetic going wrong: crash on them; Pillow's bomb
        # warning precedes our own (lower) pixel limit, and its corrupt-EXIF notes are not ours
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        try:
            run_one(data)
        except (InputError, CloudError):
            pass
        except BaseException:
            # libFuzzer writes no artifact for a Python exception: keep the input to replay it
            crash = Path(f"crash-{hashlib.sha1(data).hexdigest()}")
            crash.write_bytes(data)
            print(f"input saved to {crash}; replay: python bench/fuzz_decoder.py {crash}", file=sys.stderr)
            raise


def seeds(folder: Path) -> None:
    """Write the seed corpus: one file per target, prefixed with its selector byte."""
    from tests.synthetic import draw_digit, encode, files_of_several_pictures, tiff_with_previews

    digit = draw_digit(4, np.random.default_rng(3), size=40)
    images = {
        "png": encode(digit),
        "jpeg": encode(digit.convert("RGB"), "JPEG"),
        "webp": encode(digit, "WEBP"),
        "gif": encode(digit, "GIF"),
        "tiff": encode(digit, "TIFF"),
        "bmp": encode(digit, "BMP"),
        "pgm": encode(digit, "PPM"),
        "png-exif": encode(digit, "PNG", exif_orientation=6),
        "avif": encode(digit, "AVIF", exif_orientation=6),
        "heic": encode(digit, "HEIC", exif_orientation=6),
        # several pictures in one file (refused), and a TIFF page with previews after it (read): the page walk
        **files_of_several_pictures(digit, digit.rotate(20)),
        "tiff-previews": tiff_with_previews(digit, 10),
    }
    batch = np.random.default_rng(0).integers(0, 256, (2, 28, 28), dtype=np.uint8)
    probs = np.full((2, 10), 0.01)
    probs[:, 3] = 0.91
    from digitcloud.model import prediction_entries

    output = json.dumps({"predictions": [*prediction_entries(probs), {"error": "image: blank"}]}).encode()
    row = ("1," + ",".join(["0"] * 300 + ["200"] * 30 + ["0"] * 454) + "\n").encode()
    corpus = {f"image-{k}": b"\0" + v for k, v in images.items()}
    corpus |= {
        "npy": b"\1" + digits_file.write_digits_file(batch),
        "npz": b"\1" + digits_file.write_digits_file(batch, compressed=True),
        "output": b"\2" + output,
        "csv": b"\3" + row * 2,
        "array": b"\4" + bytes([0, 28, 28]) + batch.tobytes()[:784],
        "float-image": b"\5" + bytes([0, 20, 20]) + np.linspace(0, 1, 400, dtype=np.float32).tobytes(),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in corpus.items():
        (folder / name).write_bytes(data)


def main() -> None:
    args = sys.argv[:]
    for flag in ("-timeout=10", "-rss_limit_mb=1536"):
        if not any(a.startswith(flag.split("=")[0] + "=") for a in args):
            args.append(flag)
    corpus = next((a for a in args[1:] if not a.startswith("-")), None)
    if corpus is None:
        corpus = str(WORK / "corpus")
        args.append(corpus)
    if not Path(corpus).is_file():  # a file is one input to replay, not a corpus to seed
        seeds(Path(corpus))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
