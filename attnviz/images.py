"""Image files in, network inputs out.

Two jobs, kept apart:

* **Decoding** (`load_image`, `load_image_array`): any common file becomes an 8-bit sRGB-as-stored
  RGB image, with the colour handling a viewer needs — 16-bit data scaled (not clipped or
  truncated), transparency composited on white, palettes and CMYK (Adobe-inverted JPEGs included)
  converted, EXIF orientation applied, the first frame of animations taken. Broken files raise
  `ImageError` naming the file and the problem; nothing is ever returned half-decoded. Decoding goes
  through Pillow because it refuses truncated data (OpenCV fills the missing rows with grey and only
  warns); OpenCV is used for one thing Pillow cannot do: 16-bit colour PNG/TIFF, which Pillow
  reduces to 8 bits by dropping the low byte. Embedded ICC profiles are not applied, as neither
  timm nor transformers applies them: the network sees the pixels it was trained on.

* **Preprocessing** (`preprocess`, `denormalize`): the exact evaluation transform of the library a
  checkpoint came from, described by `PreprocessConfig`. The timm modes reproduce
  ``timm.data.create_transform(..., is_training=False)`` (torchvision resize / centre crop / pad,
  ``ToTensor``, ``Normalize``); the transformers modes reproduce the slow (PIL) image processors
  (``ViTImageProcessor``, ``BitImageProcessor``, ``DeiTImageProcessor``, ``ConvNextImageProcessor``).
  The two families place their centre crops differently (offsets rounded vs floored, zero padding
  split floor-first vs ceil-first), which shifts the input by a pixel, so each family's geometry is
  followed literally. Their value arithmetic agrees: torchvision's float32 ``x / 255`` equals
  transformers' float64 ``x * (1/255)`` cast to float32 for all 256 byte values. `input_box` says
  which part of the original image the network input covers, for drawing maps over the image.
"""
from __future__ import annotations

import io
import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError

from attnviz.nets.config import PreprocessConfig

__all__ = [
    "ImageError",
    "MAX_PIXELS",
    "MAX_SIDE",
    "IMAGE_EXTENSIONS",
    "load_image",
    "load_image_array",
    "preprocess",
    "denormalize",
    "input_box",
    "interpolation_from_pil",
    "preprocess_config_from_timm",
    "preprocess_config_from_hf",
]

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

# Safety limits checked against the header before any pixel is decoded: a small file can claim a
# 100000 x 100000 image and make a decoder allocate 30 GB ("decompression bomb").
MAX_PIXELS = 100_000_000  # 100 megapixels (a 12,000 x 8,000 photo is 96 MP)
MAX_SIDE = 30_000  # pixels along either axis
MAX_FILE_BYTES = 512 * 1024 * 1024  # files are read whole; nothing legitimate is this large

# Pillow decoders we allow. A closed list keeps out formats whose plugins run external programs
# (EPS calls Ghostscript) or that are rarely images a user means (ICNS, PSD, ...). JPEG covers
# MPO (multi-picture JPEGs from cameras): Pillow opens those through the JPEG plugin.
_PIL_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "TIFF", "WEBP", "GIF", "PPM", "AVIF")

# File name endings for open dialogs, lower case, with the dot.
IMAGE_EXTENSIONS = (
    ".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
    ".ppm", ".pgm", ".pbm", ".pnm", ".avif",
)

# PIL resampling filter for each interpolation name (timm's names; PIL's integer codes are what
# transformers stores as `resample` in preprocessor_config.json).
_PIL_FILTERS = {
    "nearest": Image.Resampling.NEAREST,  # 0
    "lanczos": Image.Resampling.LANCZOS,  # 1
    "bilinear": Image.Resampling.BILINEAR,  # 2
    "bicubic": Image.Resampling.BICUBIC,  # 3
    "box": Image.Resampling.BOX,  # 4
    "hamming": Image.Resampling.HAMMING,  # 5
}

# EXIF orientation tag value -> the transpose that displays the image upright (the table that
# PIL.ImageOps.exif_transpose uses; kept here so 16-bit images decoded by OpenCV get it too).
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION_TAG = 0x0112

_TIMM_MODES = ("timm", "timm_squash", "timm_border")
_HF_MODES = ("resize", "shortest_edge", "resize_crop")


class ImageError(Exception):
    """An image file that cannot be shown: missing, empty, not an image, corrupt, truncated or too large.

    ``str(err)`` names the file and the problem; ``err.path`` and ``err.problem`` hold them apart.
    """

    def __init__(self, path: PathLike, problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"Cannot read image '{self.path}': {problem}")


# --------------------------------------------------------------------------------------- decoding


def load_image(path: PathLike) -> Image.Image:
    """Decode an image file into an upright 8-bit RGB PIL image (mode 'RGB').

    Formats: PNG, JPEG (incl. CMYK and MPO), BMP, TIFF, WebP, GIF and AVIF (first frame), PPM.
    Raises `ImageError` for anything that is not a complete, reasonably sized image.
    """
    data = _read_file(path)
    _keep_truncated_images_strict()
    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 MP on; our own limit (MAX_PIXELS) decides instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            src = Image.open(io.BytesIO(data), formats=_available_formats())
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"the header claims an absurdly large image, refused ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            path, "not an image in a supported format (PNG, JPEG, BMP, TIFF, WebP, GIF, AVIF, PPM)"
        ) from exc
    except Exception as exc:  # a decoder's header parser failed: the file is damaged
        raise ImageError(path, f"corrupt image header ({exc})") from exc

    with src:
        width, height = src.size
        if width <= 0 or height <= 0:
            raise ImageError(path, f"the header claims an empty {width}x{height} image")
        if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
            raise ImageError(
                path,
                f"the header claims {width}x{height} pixels, over the limit of {MAX_SIDE} per side "
                f"and {MAX_PIXELS // 1_000_000} megapixels; refusing to decode",
            )
        high_bit_colour = _is_high_bit_colour(src)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                src.load()  # decodes everything: truncated or corrupt data raises here
        except MemoryError as exc:
            raise ImageError(path, "not enough memory to decode the image") from exc
        except Exception as exc:
            raise ImageError(path, f"corrupt or truncated image data ({exc})") from exc
        orientation = _exif_orientation(src)
        try:
            if high_bit_colour:
                rgb = _decode_high_bit_colour(data, (height, width))
            else:
                rgb = _pil_to_rgb_array(src)
        except MemoryError as exc:
            raise ImageError(path, "not enough memory to convert the image") from exc
        except (ValueError, OSError) as exc:
            raise ImageError(path, str(exc)) from exc

    out = Image.fromarray(rgb, "RGB")
    transpose = _ORIENTATION_TRANSPOSE.get(orientation)
    return out.transpose(transpose) if transpose is not None else out


def load_image_array(path: PathLike) -> np.ndarray:
    """`load_image` as a (H, W, 3) uint8 array, C-contiguous, for display."""
    return np.array(load_image(path), dtype=np.uint8)


def _read_file(path: PathLike) -> bytes:
    """The file's bytes, or ImageError for a missing, empty, unreadable or huge file."""
    p = Path(path)
    try:
        if not p.exists():
            raise ImageError(path, "file not found")
        if not p.is_file():
            raise ImageError(path, "not a file")
        size = p.stat().st_size
        if size == 0:
            raise ImageError(path, "the file is empty")
        if size > MAX_FILE_BYTES:
            raise ImageError(path, f"the file is {size / 2**20:.0f} MiB, too large for an image")
        return p.read_bytes()
    except OSError as exc:
        raise ImageError(path, f"cannot read the file ({exc.strerror or exc})") from exc


def _available_formats() -> tuple[str, ...]:
    """_PIL_FORMATS that this Pillow build has (Image.open fails on an unknown name, e.g. no AVIF)."""
    Image.init()
    return tuple(f for f in _PIL_FORMATS if f in Image.OPEN)


def _keep_truncated_images_strict() -> None:
    """Pillow's LOAD_TRUNCATED_IMAGES=True turns truncated files into silently grey images; undo it."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        log.warning("PIL.ImageFile.LOAD_TRUNCATED_IMAGES was True; attnviz sets it back to False")
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def _is_high_bit_colour(img: Image.Image) -> bool:
    """True for 16-bit colour PNG/TIFF, which Pillow would cut to 8 bits by dropping the low byte.

    Must be asked before ``load()``, which clears ``img.tile``.
    """
    if img.format not in ("PNG", "TIFF") or img.mode not in ("RGB", "RGBA", "LA"):
        return False
    for tile in img.tile:
        args = tile.args
        rawmode = args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else "")
        if ";16" in rawmode:
            return True
    return False


def _exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation (1..8), 1 when absent or unreadable."""
    try:
        value = img.getexif().get(_EXIF_ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a damaged EXIF block must not stop the image from loading
        return 1


def _decode_high_bit_colour(data: bytes, hw: tuple[int, int]) -> np.ndarray:
    """16-bit colour PNG/TIFF via OpenCV, alpha over white, scaled to 8 bits by /257 with rounding.

    Returns (H, W, 3) uint8. Works one channel at a time to keep float64 temporaries small.
    """
    import cv2  # imported here: only this rare path needs it

    arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.shape[:2] != hw:
        raise ValueError("OpenCV could not decode the 16-bit colour image")
    if arr.ndim == 2:
        arr = arr[:, :, None]  # (H, W, 1)
    channels = arr.shape[2]
    if channels == 1:  # gray
        planes, alpha_plane = [arr[:, :, 0]] * 3, None
    elif channels == 2:  # gray + alpha
        planes, alpha_plane = [arr[:, :, 0]] * 3, arr[:, :, 1]
    elif channels in (3, 4):  # OpenCV order is BGR(A)
        planes = [arr[:, :, 2], arr[:, :, 1], arr[:, :, 0]]
        alpha_plane = arr[:, :, 3] if channels == 4 else None
    else:
        raise ValueError(f"unsupported channel count {channels}")
    full = 65535.0 if arr.dtype == np.uint16 else 255.0
    alpha = alpha_plane.astype(np.float64) if alpha_plane is not None else None
    out = np.empty((*hw, 3), np.uint8)
    for i, plane in enumerate(planes):
        c = plane.astype(np.float64)
        if alpha is not None:
            c = (c * alpha + full * (full - alpha)) / full  # straight alpha over white
        out[:, :, i] = _to_uint8(c * (255.0 / full))
    return out


def _composite_u8_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 straight-alpha RGBA over white -> (H, W, 3) uint8, rounded to nearest.

    Integer arithmetic: (c * a + 255 * (255 - a) + 127) // 255 (no exact halves occur, as 255 is odd).
    """
    a = rgba[:, :, 3].astype(np.uint32)
    white_part = 255 * (255 - a) + 127
    out = np.empty(rgba.shape[:2] + (3,), np.uint8)
    for i in range(3):
        out[:, :, i] = (rgba[:, :, i].astype(np.uint32) * a + white_part) // 255
    return out


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip float values in [0, 255] to uint8."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)  # (H, W) -> (H, W, 3)


def _pil_to_rgb_array(img: Image.Image) -> np.ndarray:
    """A loaded PIL image of any mode as (H, W, 3) uint8 RGB; transparency composited on white.

    Raises ValueError for a colour mode that has no sensible RGB meaning.
    """
    mode = img.mode
    has_transparency = "transparency" in img.info or (
        mode == "P" and img.palette is not None and img.palette.mode == "RGBA"
    )
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        has_transparency and mode in ("P", "L", "RGB", "1")
    ):
        return _composite_u8_on_white(np.asarray(img.convert("RGBA"), dtype=np.uint8))
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode in ("L", "1"):
        return _gray_to_rgb(np.asarray(img.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16"):
        gray16 = np.asarray(img).astype(np.uint32)  # (H, W) in [0, 65535]
        # round(v / 257) in integers: no exact halves occur, as 257 is odd.
        return _gray_to_rgb(((gray16 * 2 + 257) // 514).astype(np.uint8))
    if mode == "I":
        return _gray_to_rgb(_int32_gray_to_uint8(np.asarray(img)))
    if mode == "F":
        return _gray_to_rgb(_float_gray_to_uint8(np.asarray(img)))
    if mode in ("P", "CMYK", "YCbCr", "RGBX", "HSV", "LAB"):
        # CMYK: Pillow's JPEG reader already undid Adobe's inverted storage (rawmode 'CMYK;I').
        try:
            return np.array(img.convert("RGB"), dtype=np.uint8)
        except ValueError as exc:
            raise ValueError(f"cannot convert colour mode {mode} to RGB") from exc
    raise ValueError(f"unsupported colour mode {mode}")


def _int32_gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """32-bit integer gray: values in [0, 65535] are 16-bit data (/257); anything else is stretched."""
    v = values.astype(np.float64)
    lo, hi = float(v.min()), float(v.max())
    if lo >= 0 and hi <= 65535:
        return _to_uint8(v / 257.0)
    return _stretch(v)


def _float_gray_to_uint8(values: np.ndarray) -> np.ndarray:
    """Float gray: values in [0, 1] scale by 255; other ranges are stretched; NaN/inf become 0."""
    v = values.astype(np.float64)
    finite = np.isfinite(v)
    v = np.where(finite, v, 0.0)
    if not finite.any():
        return np.zeros(v.shape, np.uint8)
    lo, hi = float(v[finite].min()), float(v[finite].max())
    if lo >= 0.0 and hi <= 1.0:
        return _to_uint8(v * 255.0)
    return _stretch(v)


def _stretch(v: np.ndarray) -> np.ndarray:
    """Linear map of [min, max] to [0, 255]."""
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return np.zeros(v.shape, np.uint8)
    return _to_uint8((v - lo) * (255.0 / (hi - lo)))


# ---------------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class _Plan:
    """The geometry of one preprocess call: resize, then pad, then crop."""

    resized_hw: tuple[int, int]  # (H, W) after the resize
    pad_ltrb: tuple[int, int, int, int]  # padding added around the resized image
    crop_top_left: tuple[int, int]  # (top, left) of the crop in the padded image
    out_hw: tuple[int, int]  # (H, W) of the network input
    fill: tuple[int, int, int]  # colour of the padding


def _validate(cfg: PreprocessConfig) -> tuple[int, int]:
    out_h, out_w = (int(v) for v in cfg.input_size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"input_size must be positive, got {cfg.input_size}")
    if cfg.crop_mode not in _TIMM_MODES + _HF_MODES:
        raise ValueError(f"unknown crop_mode {cfg.crop_mode!r}; expected one of {_TIMM_MODES + _HF_MODES}")
    if cfg.interpolation not in _PIL_FILTERS:
        raise ValueError(
            f"unknown interpolation {cfg.interpolation!r}; expected one of {tuple(_PIL_FILTERS)}"
        )
    if not cfg.crop_pct or cfg.crop_pct <= 0:
        raise ValueError(f"crop_pct must be positive, got {cfg.crop_pct}")
    if len(cfg.mean) != 3 or len(cfg.std) != 3 or any(s == 0 for s in cfg.std):
        raise ValueError(f"mean and std need 3 values and std no zero, got {cfg.mean}, {cfg.std}")
    return out_h, out_w


def _short_side_size(h: int, w: int, short: int) -> tuple[int, int]:
    """(H, W) with the short side set to `short` and the long one int(short * long / short_side).

    The rule of torchvision's Resize(int) and of transformers' get_resize_output_image_size.
    """
    if w <= h:
        return int(short * h / w), short
    return short, int(short * w / h)


def _keep_ratio_size(h: int, w: int, target_hw: tuple[int, int], longest: float) -> tuple[int, int]:
    """timm's ResizeKeepRatio: scale by the smaller (longest=0) or larger (longest=1) side ratio."""
    ratio_h, ratio_w = h / target_hw[0], w / target_hw[1]
    ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
    return round(h / ratio), round(w / ratio)


def _torchvision_crop(
    hw: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Padding and crop offset of torchvision's CenterCrop (and timm's CenterCropOrPad)."""
    h, w = hw
    ch, cw = out_hw
    pad = (0, 0, 0, 0)
    if cw > w or ch > h:
        pad = (
            (cw - w) // 2 if cw > w else 0,
            (ch - h) // 2 if ch > h else 0,
            (cw - w + 1) // 2 if cw > w else 0,
            (ch - h + 1) // 2 if ch > h else 0,
        )
        h, w = h + pad[1] + pad[3], w + pad[0] + pad[2]
    # Python's round: halves go to the even neighbour, as in torchvision.
    return pad, (int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0)))


def _hf_crop(
    hw: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
    """Padding and crop offset of transformers' numpy center_crop (zero pad, ceil half first)."""
    h, w = hw
    ch, cw = out_hw
    new_h, new_w = max(ch, h), max(cw, w)
    top_pad, left_pad = math.ceil((new_h - h) / 2), math.ceil((new_w - w) / 2)
    pad = (left_pad, top_pad, new_w - w - left_pad, new_h - h - top_pad)
    top = (h - ch) // 2 + top_pad
    left = (w - cw) // 2 + left_pad
    return pad, (max(0, top), max(0, left))


def _plan(image_hw: tuple[int, int], cfg: PreprocessConfig) -> _Plan:
    """Work out resize, pad and crop for an image of size image_hw = (H, W)."""
    out_hw = _validate(cfg)
    h, w = image_hw
    if h <= 0 or w <= 0:
        raise ValueError(f"empty image {w}x{h}")
    mode = cfg.crop_mode
    fill = (0, 0, 0)
    if mode in _TIMM_MODES:
        scale_hw = (math.floor(out_hw[0] / cfg.crop_pct), math.floor(out_hw[1] / cfg.crop_pct))
        if mode == "timm_squash":
            resized = scale_hw
        elif mode == "timm_border":
            resized = _keep_ratio_size(h, w, scale_hw, longest=1.0)
            fill = tuple(round(255 * v) for v in cfg.mean)  # type: ignore[assignment]
        elif scale_hw[0] == scale_hw[1]:
            resized = _short_side_size(h, w, scale_hw[0])
        else:
            resized = _keep_ratio_size(h, w, scale_hw, longest=0.0)
        pad, top_left = _torchvision_crop(resized, out_hw)
        return _Plan(resized, pad, top_left, out_hw, fill)

    if mode == "resize":
        return _Plan(out_hw, (0, 0, 0, 0), (0, 0), out_hw, fill)
    if mode == "shortest_edge":
        short = cfg.shortest_edge or math.floor(min(out_hw) / cfg.crop_pct)
        resized = _short_side_size(h, w, int(short))
    else:  # 'resize_crop'
        resized = (
            (int(cfg.resize_size[0]), int(cfg.resize_size[1]))
            if cfg.resize_size
            else (math.floor(out_hw[0] / cfg.crop_pct), math.floor(out_hw[1] / cfg.crop_pct))
        )
    pad, top_left = _hf_crop(resized, out_hw)
    return _Plan(resized, pad, top_left, out_hw, fill)


def preprocess(img: Image.Image, cfg: PreprocessConfig) -> torch.Tensor:
    """The network input for `img`: a (3, H, W) float32 tensor, H, W = cfg.input_size.

    Equal (to float32 rounding) to timm's eval transform for the 'timm*' modes and to the slow PIL
    transformers image processors for 'resize', 'shortest_edge' and 'resize_crop'. Images that
    are not mode 'RGB' are converted as `load_image` would (alpha over white, 16-bit scaled).
    """
    if img.mode != "RGB":
        img = Image.fromarray(_pil_to_rgb_array(img), "RGB")
    plan = _plan((img.height, img.width), cfg)
    if (img.height, img.width) != plan.resized_hw:
        # PIL takes (W, H); antialiased for bilinear/bicubic as in torchvision and transformers.
        img = img.resize(plan.resized_hw[::-1], resample=_PIL_FILTERS[cfg.interpolation])
    arr = np.asarray(img, dtype=np.uint8)  # (h, w, 3)
    left, top, right, bottom = plan.pad_ltrb
    if left or top or right or bottom:
        padded = np.empty((arr.shape[0] + top + bottom, arr.shape[1] + left + right, 3), np.uint8)
        padded[:] = np.asarray(plan.fill, np.uint8)
        padded[top : top + arr.shape[0], left : left + arr.shape[1]] = arr
        arr = padded
    y0, x0 = plan.crop_top_left
    arr = arr[y0 : y0 + plan.out_hw[0], x0 : x0 + plan.out_hw[1]]  # (H, W, 3)
    if arr.shape[:2] != plan.out_hw:
        raise AssertionError(f"crop produced {arr.shape[:2]}, expected {plan.out_hw}")

    chw = torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1)  # (3, H, W) uint8
    # torchvision's ToTensor divides in float32; transformers' rescale (x * (1/255) in float64, then
    # float32) gives the same 256 values. Normalize as both do: float32 (x - mean) / std.
    x = chw.to(torch.float32).div(255)
    mean = torch.as_tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.as_tensor(cfg.std, dtype=torch.float32).view(3, 1, 1)
    return x.sub(mean).div(std).contiguous()


def denormalize(tensor: torch.Tensor, cfg: PreprocessConfig) -> np.ndarray:
    """A network input (3, H, W) or (1, 3, H, W) back to a (H, W, 3) uint8 image, to show it."""
    x = tensor.detach().to("cpu", torch.float64)
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]  # (3, H, W)
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}")
    mean = torch.as_tensor(cfg.mean, dtype=torch.float64).view(3, 1, 1)
    std = torch.as_tensor(cfg.std, dtype=torch.float64).view(3, 1, 1)
    rgb = (x * std + mean).permute(1, 2, 0).numpy() * 255.0  # (H, W, 3)
    return _to_uint8(np.nan_to_num(rgb))


def input_box(image_size: tuple[int, int], cfg: PreprocessConfig) -> tuple[float, float, float, float]:
    """The region of the original image that the network input covers, as (x0, y0, x1, y1).

    `image_size` is the original (W, H) in pixels (PIL order). Coordinates are pixel edges in the
    original image; the box reaches outside [0, W] x [0, H] where the input is padded. A map over the
    network input drawn into this box lines up with the image.
    """
    w, h = image_size
    plan = _plan((h, w), cfg)
    rh, rw = plan.resized_hw
    sx, sy = w / rw, h / rh  # original pixels per resized pixel
    x0 = plan.crop_top_left[1] - plan.pad_ltrb[0]  # left edge in resized-image pixels
    y0 = plan.crop_top_left[0] - plan.pad_ltrb[1]
    return (x0 * sx, y0 * sy, (x0 + plan.out_hw[1]) * sx, (y0 + plan.out_hw[0]) * sy)


# --------------------------------------------------------------------------- config from metadata


def interpolation_from_pil(resample: Union[int, str]) -> str:
    """A PIL / transformers `resample` code (0..5) or a name as our interpolation name."""
    if isinstance(resample, str):
        name = resample.lower()
        if name not in _PIL_FILTERS:
            raise ValueError(f"unknown interpolation {resample!r}")
        return name
    for name, code in _PIL_FILTERS.items():
        if int(code) == int(resample):
            return name
    raise ValueError(f"unknown PIL resample code {resample!r}")


def preprocess_config_from_timm(pretrained_cfg: Mapping[str, Any]) -> PreprocessConfig:
    """PreprocessConfig from a timm pretrained_cfg / data config (keys input_size, interpolation,
    mean, std, crop_pct, crop_mode; missing keys take timm's defaults, as resolve_data_config does)."""
    size = pretrained_cfg.get("input_size", (3, 224, 224))
    size = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(int(v) for v in size[-2:])
    crop_mode = {"center": "timm", "squash": "timm_squash", "border": "timm_border"}.get(
        pretrained_cfg.get("crop_mode") or "center"
    )
    if crop_mode is None:
        raise ValueError(f"unknown timm crop_mode {pretrained_cfg.get('crop_mode')!r}")
    return PreprocessConfig(
        input_size=size,  # type: ignore[arg-type]
        mean=_three(pretrained_cfg.get("mean", (0.485, 0.456, 0.406))),
        std=_three(pretrained_cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=interpolation_from_pil(pretrained_cfg.get("interpolation") or "bicubic"),
        crop_pct=float(pretrained_cfg.get("crop_pct") or 0.875),
        crop_mode=crop_mode,  # type: ignore[arg-type]
    )


def preprocess_config_from_hf(processor_cfg: Mapping[str, Any]) -> PreprocessConfig:
    """PreprocessConfig from a transformers preprocessor_config.json (as a dict).

    Understands the resize/crop layouts of the ViT, DeiT, BiT (DINOv2), CLIP and ConvNext image
    processors. Raises ValueError for layouts that do not give a fixed input size.
    """
    kind = str(processor_cfg.get("image_processor_type") or processor_cfg.get("feature_extractor_type") or "")
    # Processors whose legacy integer `size` means the shortest edge rather than a square.
    short_edge_kinds = ("Bit", "CLIP", "ConvNext")
    default_to_square = not any(k in kind for k in short_edge_kinds)
    size = _hf_size(processor_cfg.get("size", 224), default_to_square)
    do_crop = bool(processor_cfg.get("do_center_crop", False))
    crop: Optional[tuple[int, int]] = None
    if do_crop:
        crop_dict = _hf_size(processor_cfg.get("crop_size", 224), True)
        if "height" not in crop_dict:
            raise ValueError(f"unsupported crop_size {processor_cfg.get('crop_size')!r}")
        crop = (crop_dict["height"], crop_dict["width"])
    if not processor_cfg.get("do_resize", True):
        raise ValueError("preprocessor config without resizing gives no fixed input size")
    rescale = 1.0
    if processor_cfg.get("do_rescale", True):
        rescale = float(processor_cfg.get("rescale_factor", 1 / 255))
    if not math.isclose(rescale, 1 / 255, rel_tol=1e-6):
        raise ValueError(f"unsupported rescale_factor {rescale} (only 1/255 is supported)")
    if processor_cfg.get("do_normalize", True):
        mean = _three(processor_cfg.get("image_mean", (0.5, 0.5, 0.5)))
        std = _three(processor_cfg.get("image_std", (0.5, 0.5, 0.5)))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    interpolation = interpolation_from_pil(processor_cfg.get("resample", 2))
    common = dict(mean=mean, std=std, interpolation=interpolation)

    if "ConvNext" in kind:
        edge = size.get("shortest_edge")
        if edge is None:
            raise ValueError("ConvNext preprocessor config needs size.shortest_edge")
        crop_pct = float(processor_cfg.get("crop_pct") or 224 / 256)
        if edge < 384:  # resize to edge / crop_pct, crop edge x edge
            return PreprocessConfig(
                input_size=(edge, edge), crop_mode="shortest_edge", crop_pct=crop_pct,
                shortest_edge=int(edge / crop_pct), **common,  # type: ignore[arg-type]
            )
        return PreprocessConfig(
            input_size=(edge, edge), crop_mode="resize", crop_pct=1.0, **common  # type: ignore[arg-type]
        )

    if "shortest_edge" in size:
        if crop is None:
            raise ValueError("shortest_edge resizing without a centre crop gives no fixed input size")
        return PreprocessConfig(
            input_size=crop, crop_mode="shortest_edge", shortest_edge=size["shortest_edge"],
            crop_pct=min(crop) / size["shortest_edge"], **common,  # type: ignore[arg-type]
        )
    hw = (size["height"], size["width"])
    if crop is None:
        return PreprocessConfig(
            input_size=hw, crop_mode="resize", crop_pct=1.0, **common  # type: ignore[arg-type]
        )
    return PreprocessConfig(
        input_size=crop, crop_mode="resize_crop", resize_size=hw,
        crop_pct=min(crop) / min(hw), **common,  # type: ignore[arg-type]
    )


def _three(values: Any) -> tuple[float, float, float]:
    v = [float(x) for x in (values if isinstance(values, (list, tuple)) else [values] * 3)]
    if len(v) != 3:
        raise ValueError(f"expected 3 channel values, got {values!r}")
    return (v[0], v[1], v[2])


def _hf_size(size: Any, default_to_square: bool) -> dict[str, int]:
    """transformers' size forms (int, list, dict) -> {'height', 'width'} or {'shortest_edge'}."""
    if isinstance(size, (int, float)):
        n = int(size)
        return {"height": n, "width": n} if default_to_square else {"shortest_edge": n}
    if isinstance(size, (list, tuple)):
        if len(size) == 2:
            return {"height": int(size[0]), "width": int(size[1])}
        if len(size) == 1:
            return _hf_size(size[0], default_to_square)
    if isinstance(size, Mapping):
        if "height" in size and "width" in size:
            return {"height": int(size["height"]), "width": int(size["width"])}
        if "shortest_edge" in size and not size.get("longest_edge"):
            return {"shortest_edge": int(size["shortest_edge"])}
    raise ValueError(f"unsupported size specification {size!r}")
