"""Tests for attnviz.images: decoding with colour handling, refusal of bad files, and preprocessing
parity with timm's eval transform and transformers' image processors.

Every fixture file is written here into tmp_path with Pillow, OpenCV or raw bytes.
"""
from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from attnviz.images import (
    ImageError,
    MAX_SIDE,
    denormalize,
    input_box,
    interpolation_from_pil,
    load_image,
    load_image_array,
    preprocess,
    preprocess_config_from_hf,
    preprocess_config_from_timm,
)
from attnviz.nets.config import PreprocessConfig

RNG_SEED = 1234


def _rng() -> np.random.Generator:
    return np.random.default_rng(RNG_SEED)


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 over type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(width: int, height: int, idat: bytes, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG file with the given header and raw IDAT payload, every CRC correct."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


# ------------------------------------------------------------------------------ formats, exact


@pytest.mark.parametrize(
    "name, save_kwargs",
    [
        ("a.png", {}),
        ("a.bmp", {}),
        ("a.tif", {}),
        ("a_lzw.tif", {"compression": "tiff_lzw"}),
        ("a.webp", {"lossless": True}),
        ("a.ppm", {}),
    ],
)
def test_lossless_formats_round_trip_exactly(tmp_path: Path, name: str, save_kwargs: dict) -> None:
    rgb = _rng().integers(0, 256, (23, 37, 3), dtype=np.uint8)
    path = _save(Image.fromarray(rgb), tmp_path / name, **save_kwargs)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (37, 23)
    np.testing.assert_array_equal(np.asarray(img), rgb)
    arr = load_image_array(path)
    assert arr.dtype == np.uint8 and arr.shape == (23, 37, 3) and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, rgb)


def test_jpeg_decodes_close_to_the_source(tmp_path: Path) -> None:
    # Flat 16x16 blocks survive JPEG nearly unchanged.
    colours = np.array([[200, 30, 40], [20, 180, 60], [40, 50, 220], [128, 128, 128]], np.uint8)
    rgb = np.kron(colours.reshape(2, 2, 3), np.ones((16, 16, 1), np.uint8)).astype(np.uint8)  # (32, 32, 3)
    path = _save(Image.fromarray(rgb), tmp_path / "blocks.jpg", quality=95)
    arr = load_image_array(path)
    assert arr.shape == (32, 32, 3)
    inner = (slice(4, 12), slice(4, 12))
    np.testing.assert_allclose(arr[inner].mean(axis=(0, 1)), colours[0], atol=4)
    np.testing.assert_allclose(arr[16 + 4 : 16 + 12, 16 + 4 : 16 + 12].mean(axis=(0, 1)), colours[3], atol=4)


def test_gif_gives_the_first_frame(tmp_path: Path) -> None:
    red = Image.new("RGB", (12, 10), (255, 0, 0))
    blue = Image.new("RGB", (12, 10), (0, 0, 255))
    path = tmp_path / "anim.gif"
    red.save(path, save_all=True, append_images=[blue], duration=100, loop=0)
    with Image.open(path) as check:
        assert check.n_frames == 2
    arr = load_image_array(path)
    assert arr.shape == (10, 12, 3)
    assert (arr == [255, 0, 0]).all()


# --------------------------------------------------------------------------------- colour modes


def test_gray_8bit_is_replicated(tmp_path: Path) -> None:
    gray = _rng().integers(0, 256, (9, 14), dtype=np.uint8)
    arr = load_image_array(_save(Image.fromarray(gray, "L"), tmp_path / "g.png"))
    np.testing.assert_array_equal(arr, np.repeat(gray[:, :, None], 3, axis=2))


def test_bilevel_image(tmp_path: Path) -> None:
    bits = Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).convert("1")
    arr = load_image_array(_save(bits, tmp_path / "b.png"))
    np.testing.assert_array_equal(arr[:, :, 0], [[0, 255], [255, 0]])


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_gray_16bit_ramp_is_scaled_not_clipped(tmp_path: Path, suffix: str) -> None:
    ramp = np.linspace(0, 65535, 16 * 20).round().astype(np.uint16).reshape(16, 20)
    path = tmp_path / f"ramp16.{suffix}"
    assert cv2.imwrite(str(path), ramp)
    with Image.open(path) as check:
        assert check.mode.startswith("I;16")
    arr = load_image_array(path)
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(arr[:, :, 0], expected)
    np.testing.assert_array_equal(arr[:, :, 1], expected)
    # Spans the whole 8-bit range instead of saturating (clip) or losing the low byte's rounding (>> 8).
    assert arr.min() == 0 and arr.max() == 255
    assert not np.array_equal(expected, (ramp >> 8).astype(np.uint8))


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_rgb_16bit_is_scaled_with_rounding(tmp_path: Path, suffix: str) -> None:
    rgb16 = _rng().integers(0, 65536, (11, 13, 3), dtype=np.uint16)
    path = tmp_path / f"rgb16.{suffix}"
    assert cv2.imwrite(str(path), rgb16[:, :, ::-1].copy())  # OpenCV writes BGR
    arr = load_image_array(path)
    expected = np.rint(rgb16 / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(arr, expected)
    # Pillow alone would have dropped the low byte: the test would see the difference.
    assert not np.array_equal(expected, (rgb16 >> 8).astype(np.uint8))


def test_rgba_16bit_png_is_composited_on_white(tmp_path: Path) -> None:
    bgra = np.zeros((2, 3, 4), np.uint16)
    bgra[0, 0] = (0, 0, 65535, 65535)  # opaque red
    bgra[0, 1] = (1000, 2000, 3000, 0)  # fully transparent
    bgra[0, 2] = (0, 0, 65535, 32768)  # half-transparent red
    bgra[1, :] = (30000, 20000, 10000, 65535)  # opaque
    path = tmp_path / "rgba16.png"
    assert cv2.imwrite(str(path), bgra)
    arr = load_image_array(path)
    np.testing.assert_array_equal(arr[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(arr[0, 1], [255, 255, 255])
    half = round(65535 * (65535 - 32768) / 65535 / 257)
    np.testing.assert_array_equal(arr[0, 2], [255, half, half])
    np.testing.assert_array_equal(arr[1, 0], np.rint(np.array([10000, 20000, 30000]) / 257))


def test_gray_alpha_16bit_png(tmp_path: Path) -> None:
    # Written chunk by chunk: neither Pillow nor OpenCV writes 16-bit gray + alpha PNGs.
    la = np.array([[[1000, 65535], [40000, 0], [65535, 32768]],
                   [[0, 65535], [12345, 65535], [257, 65535]]], np.uint16)  # (H, W, [gray, alpha])
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in la)  # filter byte 0 per row
    path = tmp_path / "la16.png"
    path.write_bytes(_png_bytes(3, 2, zlib.compress(raw), bit_depth=16, colour_type=4))
    arr = load_image_array(path)
    # round(v / 257); white where the alpha is 0; 16-bit white at half alpha is still white.
    np.testing.assert_array_equal(arr[:, :, 0], [[4, 255, 255], [0, 48, 1]])
    np.testing.assert_array_equal(arr[:, :, 0], arr[:, :, 2])


def test_rgba_composited_on_white(tmp_path: Path) -> None:
    rgba = np.array(
        [[[10, 200, 30, 0], [255, 0, 0, 128], [12, 34, 56, 255], [0, 0, 0, 64]]], dtype=np.uint8
    )  # (1, 4, 4)
    arr = load_image_array(_save(Image.fromarray(rgba, "RGBA"), tmp_path / "rgba.png"))
    np.testing.assert_array_equal(arr[0, 0], [255, 255, 255])  # alpha 0 -> white, colour ignored
    np.testing.assert_array_equal(arr[0, 1], [255, 127, 127])  # red at 128/255 over white
    np.testing.assert_array_equal(arr[0, 2], [12, 34, 56])  # opaque unchanged
    np.testing.assert_array_equal(arr[0, 3], [191, 191, 191])  # black at 64/255: 255 * 191 / 255


def test_gray_alpha_composited_on_white(tmp_path: Path) -> None:
    la = np.array([[[100, 255], [100, 0], [0, 128]]], np.uint8)  # (1, 3, 2)
    arr = load_image_array(_save(Image.fromarray(la, "LA"), tmp_path / "la.png"))
    np.testing.assert_array_equal(arr[0, :, 0], [100, 255, 127])


def test_palette_with_transparency(tmp_path: Path) -> None:
    idx = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    pal = Image.fromarray(idx, "P")
    pal.putpalette([50, 60, 70, 0, 200, 0, 10, 20, 250] + [0] * (256 * 3 - 9))
    path = _save(pal, tmp_path / "pal.png", transparency=0)
    with Image.open(path) as check:
        assert check.mode == "P" and "transparency" in check.info
    arr = load_image_array(path)
    np.testing.assert_array_equal(arr[0], [[255, 255, 255], [0, 200, 0], [10, 20, 250]])
    np.testing.assert_array_equal(arr[1], [[10, 20, 250], [0, 200, 0], [255, 255, 255]])


def test_palette_without_transparency(tmp_path: Path) -> None:
    pal = Image.fromarray(np.array([[0, 1]], np.uint8), "P")
    pal.putpalette([50, 60, 70, 0, 200, 0] + [0] * (256 * 3 - 6))
    arr = load_image_array(_save(pal, tmp_path / "pal.bmp"))
    np.testing.assert_array_equal(arr[0], [[50, 60, 70], [0, 200, 0]])


def test_cmyk_jpeg_with_adobe_inversion(tmp_path: Path) -> None:
    cmyk = np.zeros((16, 48, 4), np.uint8)
    cmyk[:, :16] = (0, 255, 255, 0)  # red
    cmyk[:, 16:32] = (255, 0, 0, 0)  # cyan
    cmyk[:, 32:] = (0, 0, 0, 128)  # mid gray
    path = _save(Image.fromarray(cmyk, "CMYK"), tmp_path / "cmyk.jpg", quality=95)
    # libjpeg stores CMYK the Adobe way (inverted, with an APP14 "Adobe" marker).
    assert b"Adobe" in path.read_bytes()
    arr = load_image_array(path).astype(int)
    np.testing.assert_allclose(arr[4:12, 4:12].mean(axis=(0, 1)), [255, 0, 0], atol=6)
    np.testing.assert_allclose(arr[4:12, 20:28].mean(axis=(0, 1)), [0, 255, 255], atol=6)
    np.testing.assert_allclose(arr[4:12, 36:44].mean(axis=(0, 1)), [127, 127, 127], atol=6)


def test_float_and_int32_gray_tiff(tmp_path: Path) -> None:
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    arr = load_image_array(_save(Image.fromarray(f, "F"), tmp_path / "f.tif"))
    np.testing.assert_array_equal(arr[0, :, 0], [0, 128, 255])
    i32 = np.array([[-1000, 0, 1000]], np.int32)  # outside 16-bit range: stretched min..max
    arr = load_image_array(_save(Image.fromarray(i32, "I"), tmp_path / "i.tif"))
    np.testing.assert_array_equal(arr[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize(
    "orientation, shape, top, bottom",
    [
        (6, (40, 20), (255, 0, 0), (0, 0, 255)),  # rotate 90 clockwise: left half goes to the top
        (8, (40, 20), (0, 0, 255), (255, 0, 0)),  # rotate 90 counter-clockwise: left half to the bottom
        (1, (20, 40), None, None),  # upright
    ],
)
def test_exif_orientation_is_applied(tmp_path: Path, orientation, shape, top, bottom) -> None:
    rgb = np.zeros((20, 40, 3), np.uint8)
    rgb[:, :20] = (255, 0, 0)  # left half red
    rgb[:, 20:] = (0, 0, 255)  # right half blue
    img = Image.fromarray(rgb)
    exif = img.getexif()
    exif[0x0112] = orientation
    path = _save(img, tmp_path / "rot.jpg", exif=exif, quality=95)
    arr = load_image_array(path).astype(int)
    assert arr.shape[:2] == shape
    if top is not None:
        np.testing.assert_allclose(arr[2:8, 5:15].mean(axis=(0, 1)), top, atol=6)
        np.testing.assert_allclose(arr[32:38, 5:15].mean(axis=(0, 1)), bottom, atol=6)


def test_exif_orientation_applies_to_16bit_png(tmp_path: Path) -> None:
    rgb16 = np.zeros((2, 4, 3), np.uint16)
    rgb16[:, :2] = (65535, 0, 0)  # left half red
    # Pillow cannot write 16-bit RGB, OpenCV cannot write EXIF: add an eXIf chunk by hand.
    ok, encoded = cv2.imencode(".png", rgb16[:, :, ::-1].copy())
    assert ok
    data = encoded.tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif_bytes = exif.tobytes()[6:] if exif.tobytes().startswith(b"Exif\x00\x00") else exif.tobytes()
    iend = data.rindex(b"IEND") - 4
    data = data[:iend] + _png_chunk(b"eXIf", exif_bytes) + data[iend:]
    path = tmp_path / "rot16.png"
    path.write_bytes(data)
    arr = load_image_array(path)
    assert arr.shape == (4, 2, 3)
    np.testing.assert_array_equal(arr[:2, :, 0], 255)  # red on top after the clockwise turn
    np.testing.assert_array_equal(arr[2:, :, 0], 0)


# ------------------------------------------------------------------------------------ bad files


def _assert_refused(path: Path, *words: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and path.name in message
    for word in words:
        assert word in message.lower()
    return info.value


def _good_bytes(fmt: str) -> bytes:
    rgb = _rng().integers(0, 256, (64, 80, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def test_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.jpg"
    path.write_bytes(_rng().integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_refused(path, "not an image")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _assert_refused(path, "empty")


def test_text_named_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n" * 20)
    _assert_refused(path, "not an image")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    _assert_refused(tmp_path / "nope.png", "not found")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    _assert_refused(folder, "not a file")


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg"), ("BMP", "bmp"), ("WEBP", "webp")])
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_files(tmp_path: Path, fmt: str, suffix: str, keep: float) -> None:
    data = _good_bytes(fmt)
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(data[: int(len(data) * keep)])
    _assert_refused(path)


def test_jpeg_missing_its_last_bytes(tmp_path: Path) -> None:
    data = _good_bytes("JPEG")
    path = tmp_path / "short.jpg"
    path.write_bytes(data[:-2])
    _assert_refused(path, "truncated")


def test_truncated_even_if_pillow_was_told_to_accept_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = _good_bytes("JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    _assert_refused(path, "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_16bit_png(tmp_path: Path) -> None:
    ok, encoded = cv2.imencode(".png", _rng().integers(0, 65536, (64, 64, 3), dtype=np.uint16))
    assert ok
    path = tmp_path / "cut16.png"
    path.write_bytes(encoded.tobytes()[: len(encoded) // 2])
    _assert_refused(path, "truncated")


def test_png_with_corrupt_compressed_data(tmp_path: Path) -> None:
    # Valid chunk structure and CRCs, but the IDAT payload is not a zlib stream.
    path = tmp_path / "garbage_idat.png"
    path.write_bytes(_png_bytes(16, 16, b"\x78\x9c" + bytes(range(200))))
    _assert_refused(path, "corrupt")


@pytest.mark.parametrize("disable_pillow_limit", [False, True])
def test_decompression_bomb_header(tmp_path: Path, monkeypatch, disable_pillow_limit: bool) -> None:
    if disable_pillow_limit:  # our own limit must hold even when Pillow's is switched off
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(100_000, 100_000, zlib.compress(b"\x00" * 1000)))
    assert path.stat().st_size < 200
    _assert_refused(path, "100000x100000" if disable_pillow_limit else "large")


def test_overlong_side_is_refused(tmp_path: Path) -> None:
    # A valid 40000 x 1 image: few pixels, but a side over MAX_SIDE.
    path = _save(Image.new("L", (MAX_SIDE + 10_000, 1), 7), tmp_path / "strip.png")
    _assert_refused(path, "limit")


# ------------------------------------------------------------------------- preprocessing: timm

# A few non-square test images, random noise (the hardest case for an interpolation mismatch),
# one smaller than the network input so the resize enlarges.
_SIZES_WH = [(300, 200), (203, 347), (160, 120)]


def _noise_images() -> list[Image.Image]:
    rng = _rng()
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for w, h in _SIZES_WH]


def _timm_reference(img: Image.Image, data_config: dict) -> torch.Tensor:
    import timm.data

    transform = timm.data.create_transform(**data_config, is_training=False)
    return transform(img)


# (input size, interpolation, crop_pct, timm crop_mode): every size, filter, crop_pct and mode appears
# several times, in combinations that exercise the square and non-square resize branches.
_TIMM_CASES = [
    (224, "bicubic", 0.875, "center"),
    (224, "bilinear", 0.9, "center"),
    (224, "bicubic", 1.0, "center"),
    (224, "bicubic", 0.875, "squash"),
    (224, "bilinear", 1.0, "border"),
    (256, "bicubic", 0.9, "center"),
    (256, "bilinear", 0.875, "squash"),
    (256, "bicubic", 0.9, "border"),
    (518, "bicubic", 1.0, "center"),
    (518, "bilinear", 0.875, "center"),
    ((224, 256), "bicubic", 0.875, "center"),
    ((224, 256), "bilinear", 0.9, "border"),
    ((240, 200), "bicubic", 1.0, "squash"),
]


@pytest.mark.parametrize("size, interpolation, crop_pct, crop_mode", _TIMM_CASES)
def test_timm_eval_transform_parity(size, interpolation: str, crop_pct: float, crop_mode: str) -> None:
    import timm.data

    hw = (size, size) if isinstance(size, int) else size
    data_config = timm.data.resolve_data_config(
        pretrained_cfg=dict(
            input_size=(3, *hw), interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode,
            mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        )
    )
    cfg = preprocess_config_from_timm(data_config)
    for img in _noise_images():
        ours = preprocess(img, cfg)
        ref = _timm_reference(img, data_config)
        assert ours.dtype == torch.float32 and ours.shape == (3, *hw)
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "model_name",
    [
        "vit_base_patch16_224.augreg2_in21k_ft_in1k",
        "deit_small_patch16_224.fb_in1k",
        "vit_small_patch14_dinov2.lvd142m",
        "swinv2_tiny_window8_256.ms_in1k",
        "convnext_tiny.fb_in22k_ft_in1k_384",  # crop_mode 'squash'
    ],
)
def test_timm_parity_with_real_pretrained_configs(model_name: str) -> None:
    """The configs timm ships for these models (no weights are needed), resolved as timm does."""
    import timm.data
    import timm.models

    data_config = timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(model_name).to_dict()
    )
    cfg = preprocess_config_from_timm(data_config)
    for img in _noise_images()[:2]:
        torch.testing.assert_close(preprocess(img, cfg), _timm_reference(img, data_config), atol=1e-6, rtol=0)


def test_timm_parity_via_model_config() -> None:
    import timm
    import timm.data

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, num_classes=0)
    data_config = timm.data.resolve_data_config({}, model=model)
    cfg = preprocess_config_from_timm(data_config)
    assert cfg.crop_pct == data_config["crop_pct"] and cfg.input_size == (224, 224)
    img = _noise_images()[1]
    torch.testing.assert_close(preprocess(img, cfg), _timm_reference(img, data_config), atol=1e-6, rtol=0)


# ----------------------------------------------------------------- preprocessing: transformers


def _hf_slow(name: str):
    """The PIL ("slow") processor class: `XImageProcessorPil` in transformers 5, `XImageProcessor` in 4."""
    import transformers

    cls = getattr(transformers, f"{name}Pil", None)
    if cls is None:
        cls = getattr(transformers, name)
        if "Fast" in cls.__name__ or getattr(cls, "backend", None) == "torchvision":
            raise AssertionError(f"no PIL processor for {name}")
    return cls


def _hf_reference(processor, img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(processor(img, return_tensors="np")["pixel_values"][0]))


_IN_MEAN, _IN_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]  # ImageNet statistics

_HF_CASES = [
    # ViT / Swin / DINO (v1): straight resize.
    ("ViTImageProcessor", {}),
    ("ViTImageProcessor", {"size": {"height": 384, "width": 384}, "resample": 3}),
    ("ViTImageProcessor", {"size": {"height": 160, "width": 240}, "image_mean": [0.485, 0.456, 0.406],
                           "image_std": [0.229, 0.224, 0.225]}),
    # DINOv2: BitImageProcessor, shortest edge 256 bicubic then crop 224, ImageNet statistics.
    ("BitImageProcessor", {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224},
                           "resample": 3, "image_mean": _IN_MEAN, "image_std": _IN_STD}),
    ("BitImageProcessor", {"size": {"shortest_edge": 150}, "crop_size": {"height": 224, "width": 200}}),
    # DeiT: resize to 256 x 256, crop 224.
    ("DeiTImageProcessor", {}),
    # ConvNext: below 384 resize to edge / crop_pct and crop; at 384 warp.
    ("ConvNextImageProcessor", {}),
    ("ConvNextImageProcessor", {"size": {"shortest_edge": 384}}),
]


@pytest.mark.parametrize("name, kwargs", _HF_CASES)
def test_transformers_slow_processor_parity(name: str, kwargs: dict) -> None:
    processor = _hf_slow(name)(**kwargs)
    cfg = preprocess_config_from_hf(processor.to_dict())
    images = _noise_images() + [Image.fromarray(_rng().integers(0, 256, (301, 101, 3), dtype=np.uint8))]
    for img in images:
        ref = _hf_reference(processor, img)
        ours = preprocess(img, cfg)
        assert ours.dtype == torch.float32 and ours.shape == ref.shape
        torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


# preprocessor_config.json files as published with well-known checkpoints (older ones use the
# legacy integer `size` and a FeatureExtractor type name).
_HF_JSON = [
    ("ViTImageProcessor", {  # google/vit-base-patch16-224
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224}),
    ("ViTImageProcessor", {  # microsoft/swin-tiny-patch4-window7-224
        "do_normalize": True, "do_resize": True, "feature_extractor_type": "ViTFeatureExtractor",
        "image_mean": _IN_MEAN, "image_std": _IN_STD, "resample": 3, "size": 224}),
    ("DeiTImageProcessor", {  # facebook/deit-base-distilled-patch16-224
        "crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "DeiTFeatureExtractor", "image_mean": _IN_MEAN, "image_std": _IN_STD,
        "resample": 3, "size": 256}),
    ("BitImageProcessor", {  # facebook/dinov2-base
        "crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": _IN_MEAN,
        "image_processor_type": "BitImageProcessor", "image_std": _IN_STD, "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}}),
]


@pytest.mark.parametrize("name, config", _HF_JSON)
def test_transformers_parity_from_published_json(name: str, config: dict) -> None:
    cfg = preprocess_config_from_hf(config)
    processor = _hf_slow(name)(**{k: v for k, v in config.items() if not k.endswith("_type")})
    for img in _noise_images()[:2]:
        torch.testing.assert_close(preprocess(img, cfg), _hf_reference(processor, img), atol=1e-6, rtol=0)


def test_transformers_parity_with_hand_built_configs() -> None:
    """The PreprocessConfig a loader would write by hand for ViT and DINOv2 checkpoints."""
    img = _noise_images()[0]
    vit = PreprocessConfig(input_size=(224, 224), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                           interpolation="bilinear", crop_mode="resize")
    torch.testing.assert_close(preprocess(img, vit), _hf_reference(_hf_slow("ViTImageProcessor")(), img),
                               atol=1e-6, rtol=0)
    dinov2 = PreprocessConfig(input_size=(224, 224), interpolation="bicubic", crop_mode="shortest_edge",
                              shortest_edge=256)
    bit = _hf_slow("BitImageProcessor")(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                                        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    torch.testing.assert_close(preprocess(img, dinov2), _hf_reference(bit, img), atol=1e-6, rtol=0)


def test_transformers_fast_processors_are_within_two_levels() -> None:
    """transformers 5 makes the torchvision ("fast") processors the default. They resize uint8 tensors
    with torchvision's antialiased kernels instead of PIL, so they differ from the slow processors (and
    so from us). Measured on noise and blurred images of 90..640 px, ViT (bilinear, 224) and BiT
    (bicubic, 256 -> 224): at most 2 levels of the 8-bit input (|diff| * std * 255), usually 1; the
    share of values that differ is 0 % to 1.2 %, and 24 % for one noise image resized down in one axis
    and up in the other. Our parity target is the slow processors (exact, see above); this test keeps
    the gap to the default ones in view."""
    import transformers

    if hasattr(transformers, "ViTImageProcessorPil"):  # transformers 5: the plain names are the fast ones
        fast_classes = (transformers.ViTImageProcessor, transformers.BitImageProcessor)
    else:
        fast_classes = (transformers.ViTImageProcessorFast, transformers.BitImageProcessorFast)
    for fast_cls, kwargs in zip(fast_classes, ({}, {"size": {"shortest_edge": 256}})):
        fast = fast_cls(**kwargs)
        cfg = preprocess_config_from_hf(_hf_slow(fast_cls.__name__.removesuffix("Fast"))(**kwargs).to_dict())
        std = torch.tensor(cfg.std).view(3, 1, 1)
        for img in _noise_images():
            ref = fast(img, return_tensors="pt")["pixel_values"][0]
            levels = ((preprocess(img, cfg) - ref) * std * 255).abs()
            assert levels.max() <= 2.0 + 1e-3
            assert (levels > 0.5).float().mean() < 0.3


def test_parity_is_bit_exact() -> None:
    """Beyond atol 1e-6: the results are identical bit for bit (same PIL resize, same crop, and the
    float32 x / 255 that torchvision uses, which for bytes equals transformers' float64 x * (1/255))."""
    import timm.data

    img = _noise_images()[0]
    data_config = timm.data.resolve_data_config(
        pretrained_cfg=dict(input_size=(3, 224, 224), interpolation="bicubic", crop_pct=0.9)
    )
    ours = preprocess(img, preprocess_config_from_timm(data_config))
    assert torch.equal(ours, _timm_reference(img, data_config))
    processor = _hf_slow("BitImageProcessor")(size={"shortest_edge": 256})
    ours = preprocess(img, preprocess_config_from_hf(processor.to_dict()))
    assert torch.equal(ours, _hf_reference(processor, img))


# -------------------------------------------------------------------------- preprocessing: misc


def test_denormalize_returns_the_exact_input_pixels() -> None:
    rgb = _rng().integers(0, 256, (32, 48, 3), dtype=np.uint8)
    img = Image.fromarray(rgb)
    for cfg in (
        PreprocessConfig(input_size=(32, 48), crop_mode="resize", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25)),
        PreprocessConfig(input_size=(32, 48), crop_mode="timm", crop_pct=1.0),
    ):
        x = preprocess(img, cfg)
        np.testing.assert_array_equal(denormalize(x, cfg), rgb)
        np.testing.assert_array_equal(denormalize(x[None], cfg), rgb)
    with pytest.raises(ValueError):
        denormalize(torch.zeros(4, 8, 8), cfg)


def test_border_mode_pads_with_the_mean_colour() -> None:
    img = Image.new("RGB", (100, 50), (0, 0, 0))
    cfg = PreprocessConfig(input_size=(64, 64), crop_mode="timm_border", crop_pct=1.0)
    shown = denormalize(preprocess(img, cfg), cfg)
    np.testing.assert_array_equal(shown[0, 0], [round(255 * m) for m in cfg.mean])
    np.testing.assert_array_equal(shown[32, 32], [0, 0, 0])


def test_preprocess_converts_other_modes_like_load_image(tmp_path: Path) -> None:
    rgba = _rng().integers(0, 256, (40, 30, 4), dtype=np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    cfg = PreprocessConfig(input_size=(32, 32))
    on_white = load_image(_save(img, tmp_path / "x.png"))
    torch.testing.assert_close(preprocess(img, cfg), preprocess(on_white, cfg), atol=0, rtol=0)


@pytest.mark.parametrize(
    "crop_mode", ["timm", "timm_squash", "timm_border", "resize", "shortest_edge", "resize_crop"]
)
@pytest.mark.parametrize("size_wh", [(200, 120), (90, 230)])
def test_input_box_maps_network_pixels_back_to_the_image(crop_mode: str, size_wh) -> None:
    """Each input pixel, resized with 'nearest', must come from the image pixel the box predicts."""
    w, h = size_wh
    ys, xs = np.mgrid[0:h, 0:w]
    coded = np.stack([xs, ys, np.zeros_like(xs)], axis=2).astype(np.uint8)  # R = x, G = y
    cfg = PreprocessConfig(input_size=(64, 80), interpolation="nearest", crop_pct=0.8, crop_mode=crop_mode,
                           mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    shown = denormalize(preprocess(Image.fromarray(coded), cfg), cfg).astype(float)  # (64, 80, 3)
    x0, y0, x1, y1 = input_box((w, h), cfg)
    col_centre = x0 + (np.arange(80) + 0.5) * (x1 - x0) / 80 - 0.5  # image x of each input column
    row_centre = y0 + (np.arange(64) + 0.5) * (y1 - y0) / 64 - 0.5
    inside_x = (col_centre > -0.5) & (col_centre < w - 0.5)
    inside_y = (row_centre > -0.5) & (row_centre < h - 0.5)
    assert inside_x.any() and inside_y.any()
    rows, cols = np.ix_(inside_y, inside_x)
    assert np.abs(shown[rows, cols, 0] - col_centre[None, inside_x]).max() <= 0.5 + 1e-6
    assert np.abs(shown[rows, cols, 1] - row_centre[inside_y, None]).max() <= 0.5 + 1e-6


def test_bad_configs_raise() -> None:
    img = Image.new("RGB", (10, 10))
    with pytest.raises(ValueError):
        preprocess(img, PreprocessConfig(crop_mode="zoom"))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        preprocess(img, PreprocessConfig(interpolation="cubic"))
    with pytest.raises(ValueError):
        preprocess(img, PreprocessConfig(input_size=(0, 10)))
    with pytest.raises(ValueError):
        preprocess_config_from_hf(  # shortest edge without a crop: no fixed input size
            {"image_processor_type": "BitImageProcessor", "size": {"shortest_edge": 224},
             "do_center_crop": False}
        )


def test_interpolation_names() -> None:
    assert [interpolation_from_pil(i) for i in range(6)] == [
        "nearest", "lanczos", "bilinear", "bicubic", "box", "hamming"
    ]
    assert interpolation_from_pil("BICUBIC") == "bicubic"
    with pytest.raises(ValueError):
        interpolation_from_pil(9)
