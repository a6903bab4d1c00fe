"""Which image formats digitcloud decodes, told by a file's first bytes, never its name.

Pillow can open some forty formats, a few through outside programs (EPS through Ghostscript), so
``decode`` lets it try only the formats photos and scans come in:

* PNG, JPEG, WebP, GIF, BMP, TIFF, PNM: Pillow's own decoders.
* AVIF (Android phones, the web): Pillow's, when it was built with libavif (its recent wheels are).
* HEIC/HEIF (an iPhone camera's default): libheif, through the optional pillow-heif 1.9 or newer
  (``pip install 'digitcloud[heic]'``). It is registered with Pillow when the first HEIC is met, as
  ``pillow_heif.register_heif_opener()`` would be; a HEIF reader the user registered is used as it is.
  Older libheif builds crash the process on some damaged files (pillow-heif 1.5's libheif 1.23.1,
  pi-heif 1.4's 1.23.0: a HEIC with one byte changed), so an older pillow-heif is refused, not used.

Both containers are ISO media files: an ``ftyp`` box whose brands say what the image is coded in.
Both readers hand Pillow the picture as it is meant to be seen (libheif applies the file's rotation
and resets the EXIF orientation to 1; Pillow's AVIF keeps it in the EXIF, which ``exif_transpose``
applies), so a phone photo is turned once, like a JPEG.
"""

from __future__ import annotations

import importlib
import re
import threading

from PIL import Image, features

from digitcloud.errors import InputError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".pnm"}
    | {".avif", ".heic", ".heif", ".hif"}
)
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")  # Pillow's names for its own decoders
NAMES = "PNG, JPEG, WebP, GIF, BMP, TIFF, PNM, AVIF, HEIC"  # for messages
HEIF_READER = "pillow_heif"
HEIF_READER_MIN = (1, 9)  # libheif 1.23.7: fuzzed here (bench/README), where older builds segfault
HEIC_HINT = "reading HEIC needs pillow-heif: pip install 'digitcloud[heic]' (or export the photo as JPEG)"
AVIF_HINT = "this Pillow was built without AVIF: pip install -U pillow"

_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"})
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"GIF8": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
}
_heif_lock = threading.Lock()


def sniff(data: bytes) -> str:
    """The format the first bytes claim ("PNG", "WebP", "HEIC", …), or "" when they claim none."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    brands = _brands(data)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if brands & _HEIF_BRANDS:
        return "HEIC"
    return next((kind for magic, kind in _SIGNATURES.items() if data.startswith(magic)), "")


def decoders(data: bytes) -> tuple[str, ...]:
    """The Pillow formats that may open ``data``. Raises ``InputError`` when the bytes are an AVIF or
    a HEIC and nothing here can read it, with what to install."""
    kind = sniff(data)
    if kind == "AVIF":
        if not _pillow_reads_avif():
            raise InputError(f"an AVIF image: {AVIF_HINT}")
        return ("AVIF",)
    if kind == "HEIC":
        _register_heif_reader()
        return ("HEIF",)
    return PILLOW_FORMATS


def _brands(data: bytes) -> frozenset[bytes]:
    """An ISO media file's brands: the ``ftyp`` box's major brand and compatible ones."""
    if data[4:8] != b"ftyp":
        return frozenset()
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return frozenset(data[at : at + 4] for at in range(8, end - 3, 4) if at != 12)  # 12: the minor version


def _pillow_reads_avif() -> bool:
    # features.check warns about a feature it does not know (Pillow before AVIF), so ask first
    return "avif" in features.modules and bool(features.check_module("avif"))


def _register_heif_reader() -> None:
    if "HEIF" in Image.OPEN:
        return
    with _heif_lock:  # decode runs on several threads; register once
        if "HEIF" in Image.OPEN:
            return
        try:
            reader = importlib.import_module(HEIF_READER)
        except ImportError:
            raise InputError(f"a HEIC image: {HEIC_HINT}") from None
        version = reader.__version__
        if _release(version) < HEIF_READER_MIN:
            minimum = ".".join(map(str, HEIF_READER_MIN))
            raise InputError(
                f"a HEIC image: pillow-heif {version} is too old to read HEIC safely (its libheif can crash on a "
                f"damaged file): pip install -U 'pillow-heif>={minimum}'"
            )
        reader.register_heif_opener()


def _release(version: str) -> tuple[int, ...]:
    """A version's leading numbers: 1.9.0 -> (1, 9, 0), 1.10.0.dev1 -> (1, 10, 0)."""
    numbers = re.match(r"\d+(\.\d+)*", version)
    return tuple(int(n) for n in numbers.group().split(".")) if numbers else ()
