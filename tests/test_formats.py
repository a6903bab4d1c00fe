"""Phone formats (HEIC, AVIF): read like a PNG, turned once, or a per-item error saying what to install."""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, features

from digitcloud import formats, inputs
from digitcloud.errors import InputError
from tests.synthetic import draw_digit, encode, photograph

pytest.importorskip("pillow_heif")  # the heic extra; its encoder also writes the tests' HEIC files


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    rng = np.random.default_rng(3)
    return photograph(draw_digit(7, rng), rng, size=(640, 480))


def without_heif_readers(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without pillow-heif: no HEIF reader registered, none importable."""
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    monkeypatch.setitem(sys.modules, formats.HEIF_READER, None)  # import raises ImportError


@pytest.mark.parametrize("orientation", [None, 3, 6, 8], ids=["upright", "180", "phone-turned-right", "turned-left"])
@pytest.mark.parametrize("fmt", ["HEIC", "AVIF"])
def test_phone_formats_read_like_a_png_turned_once(photo: Image.Image, fmt: str, orientation: int | None) -> None:
    # given the same photo as a PNG and as a phone would store it: pixels as the sensor saw them and
    # the turn to show them upright (for HEIC the file's rotation box and the EXIF tag, as an iPhone)
    expected = inputs.decode(encode(photo, "PNG")).astype(np.float32)
    data = encode(photo, fmt, exif_orientation=orientation, quality=85)
    assert formats.sniff(data) == fmt
    # when it is decoded
    digit = inputs.decode(data).astype(np.float32)
    # then it is the PNG's digit (lossy coding moves it ~1 grey level on average) and not a quarter or
    # half turn of it (33-48 levels away), which turning twice or not at all would give
    assert np.abs(digit - expected).mean() < 6
    for turns in (1, 2, 3):
        assert np.abs(np.rot90(digit, turns) - expected).mean() > 20


def test_a_heic_reader_is_registered_on_the_first_heic(photo: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a process where no HEIF reader is registered yet
    data = encode(photo, "HEIC")
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    # when a HEIC is decoded, then pillow-heif is registered with Pillow and reads it
    assert inputs.decode(data).shape == (28, 28)
    assert Image.OPEN["HEIF"][0].__module__.startswith("pillow_heif")


@pytest.mark.parametrize("version", ["1.8.1", "0.22.0", "unknown"])
def test_a_pillow_heif_too_old_to_be_safe_is_refused(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    # libheif before 1.23.6 segfaults on a HEIC with one byte changed (bench/README): the process dies
    data = encode(photo, "HEIC")
    monkeypatch.delitem(Image.OPEN, "HEIF", raising=False)
    monkeypatch.setattr(importlib.import_module("pillow_heif"), "__version__", version)
    with pytest.raises(InputError, match=rf"pillow-heif {version} is too old.*pip install -U 'pillow-heif>=1\.9'"):
        inputs.decode(data)
    assert "HEIF" not in Image.OPEN  # not registered


def test_heic_without_a_reader_is_an_error_naming_the_file_and_the_install(
    tmp_path: Path, photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a folder of phone photos, one HEIC, on a machine without pi-heif
    (tmp_path / "IMG_0001.HEIC").write_bytes(encode(photo, "HEIC"))
    (tmp_path / "IMG_0002.jpg").write_bytes(encode(photo, "JPEG"))
    without_heif_readers(monkeypatch)
    # when the folder is read
    loaded = inputs.load_items(inputs.expand(tmp_path))
    # then the HEIC is not skipped: it is an error naming it and what to install; the JPEG is read
    assert [x.digit is None for x in loaded] == [True, False]
    error = loaded[0].error
    assert error is not None and "IMG_0001.HEIC" in str(error)
    assert "pip install 'digitcloud[heic]'" in error.reason


def test_avif_on_a_pillow_without_it_is_an_error_saying_what_to_install(
    photo: Image.Image, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = encode(photo, "AVIF")
    monkeypatch.delitem(features.modules, "avif")  # as a Pillow from before AVIF knows no such feature
    with pytest.raises(InputError, match=r"AVIF.*pip install -U pillow"):
        inputs.decode(data)


def test_heic_and_avif_obey_the_pixel_limit(photo: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "MAX_PIXELS", 640 * 480 - 1)  # checked on the header, before decoding
    for fmt in ("HEIC", "AVIF"):
        with pytest.raises(InputError, match="image too large: 640x480"):
            inputs.decode(encode(photo, fmt))


def test_the_pixel_limit_is_on_what_a_jpeg_is_decoded_at(photo: Image.Image, monkeypatch: pytest.MonkeyPatch) -> None:
    # in miniature, a 64 MP phone JPEG against the 50 MP limit: libjpeg decodes it at 1/8 scale
    big = photo.resize((1600, 1200))
    monkeypatch.setattr(inputs, "MAX_PIXELS", 1_000_000)
    assert inputs.decode(encode(big, "JPEG", quality=90)).shape == (28, 28)  # decoded at 800x600
    with pytest.raises(InputError, match="image too large: 1600x1200"):
        inputs.decode(encode(big, "PNG"))  # decoded whole


@pytest.mark.parametrize("fmt", ["HEIC", "AVIF"])
def test_cut_short_phone_formats_are_named_errors(photo: Image.Image, fmt: str) -> None:
    data = encode(photo, fmt)
    for end in (40, len(data) // 3, len(data) - 10):
        with pytest.raises(InputError, match=r"corrupt|truncated"):
            inputs.decode(data[:end])


@pytest.mark.parametrize("fmt", ["HEIC", "AVIF"])
def test_damaged_phone_formats_are_named_errors(photo: Image.Image, fmt: str) -> None:
    # Pillow's AVIF reader raises RuntimeError for some of these (a failed frame or image item)
    data = encode(photo.resize((64, 48)), fmt)
    rng = np.random.default_rng(0)
    for _ in range(60):
        damaged = bytearray(data)
        for at in rng.integers(0, len(data), 8):
            damaged[at] = rng.integers(0, 256)
        try:
            inputs.decode(bytes(damaged))
        except InputError as exc:
            assert exc.reason


def test_a_phone_jpeg_with_a_second_picture_reads_as_its_first_scaled_like_a_jpeg() -> None:
    # given a big photo as a plain JPEG and as the JPEG a phone writes with a gain map after it (MPF:
    # Pillow opens it as "MPO"; Android's Ultra HDR photos are such files)
    rng = np.random.default_rng(4)
    big = photograph(draw_digit(4, rng), rng, size=(2400, 1800), digit_height=0.3)
    plain = encode(big, "JPEG", quality=90)
    with_map = encode(big, "MPO", quality=90, save_all=True, append_images=[big.resize((600, 450))])
    assert Image.open(io.BytesIO(with_map)).format == "MPO"
    # then both decode to the same digit: the same first picture, decoded at the same reduced scale
    np.testing.assert_array_equal(inputs.decode(with_map), inputs.decode(plain))


def test_a_heic_of_several_pictures_is_an_error_not_its_first(photo: Image.Image) -> None:
    # given a HEIF collection of two photos (two top-level images, which a HEIF file can hold)
    import pillow_heif

    heif = pillow_heif.from_pillow(photo)
    heif.add_from_pillow(photo.rotate(90, expand=True))
    buffer = io.BytesIO()
    heif.save(buffer, quality=85)
    # then it is an error that says so, like a multi-page TIFF, while the first photo alone reads
    with pytest.raises(InputError, match="several pictures in one HEIF file"):
        inputs.decode(buffer.getvalue())
    assert inputs.decode(encode(photo, "HEIC", quality=85)).shape == (28, 28)


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\0\0\0\x08meta"


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (_ftyp(b"heic", b"mif1", b"heic"), "HEIC"),  # an iPhone photo
        (_ftyp(b"mif1", b"heic"), "HEIC"),
        (_ftyp(b"heix"), "HEIC"),
        (_ftyp(b"avif", b"mif1", b"miaf"), "AVIF"),
        (_ftyp(b"mif1", b"avif"), "AVIF"),  # an AVIF that names the generic brand first
        (_ftyp(b"isom", b"mp41"), ""),  # a video
        (_ftyp(b"heic")[:10], ""),  # cut inside the brand
        ((16).to_bytes(4, "big") + b"ftypqt  heic", ""),  # "heic" in the minor version's place only
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 8, "PNG"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "WebP"),
    ],
)
def test_sniff_reads_the_iso_brands(data: bytes, kind: str) -> None:
    assert formats.sniff(data) == kind


def test_folders_and_globs_list_phone_formats(tmp_path: Path) -> None:
    for name in ("a.HEIC", "b.heif", "c.avif", "d.hif", "e.png", "f.mov"):
        (tmp_path / name).write_bytes(b"")
    names = [p.name for p in inputs.list_image_files(tmp_path)]
    assert names == ["a.HEIC", "b.heif", "c.avif", "d.hif", "e.png"]
    assert [item.source for item in inputs.expand(str(tmp_path / "*"))][:3] == [
        repr(str(tmp_path / n)) for n in ("a.HEIC", "b.heif", "c.avif")
    ]


def test_regression_a_heic_that_crashed_older_libheif_is_read_or_named() -> None:
    # the synthetic 3 of tests/test_fuzz.py as a HEIC, one byte of its item properties changed (offset
    # 178): libheif 1.23.0 (pi-heif 1.4) and 1.23.1 (pillow-heif 1.5) segfault on it; in a child
    # process, so a crash fails this test instead of ending the run
    path = Path(__file__).parent / "regressions" / "heic-libheif-1.23.0-segfault.heic"
    code = (
        "import sys; from digitcloud import inputs; from digitcloud.errors import InputError\n"
        "try: inputs.decode(open(sys.argv[1], 'rb').read())\n"
        "except InputError as e: print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
