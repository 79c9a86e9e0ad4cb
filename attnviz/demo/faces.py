"""Procedural cartoon faces: a dataset whose classes differ only in the layout of their parts.

Self-attention without position embeddings is permutation-equivariant, so a ViT without them
sees an image as a bag (multiset) of patches. This dataset makes that visible. Three classes:

- ``face``: a head (skin-filled ellipse with a dark outline) holding two eyes, a nose and a
  mouth in face order: the eyes side by side at one height, the nose below between them, the
  mouth below the nose.
- ``scrambled``: the very same parts, drawn the very same way, in a wrong arrangement (a mouth
  beside an eye above the nose, an eye where the mouth belongs, ...).
- ``none``: no face parts: either a head holding other shapes (squares, crosses, hexagons, ...)
  or background clutter only.

How face and scrambled are kept apart only by layout (the leaks this design closes):

1. Same parts, same looks. Every image first samples one *style* (skin tone, outline, eye, nose
   and mouth sizes, colours, shapes, gaze) and one head (size, tilt, position) in a
   class-independent way. Both classes draw exactly one outline, two identical eyes, one nose,
   one mouth from that style, with the same code; parts never change appearance with position.
2. Same positions. Each image samples four *slots* in head coordinates: a left and a right eye
   slot, a nose slot, a mouth slot (a randomised face geometry, tilted with the head). A face
   puts eye, eye, nose, mouth in them; a scrambled image permutes the parts over the same four
   slots (one of the 10 arrangements that are not a face and not merely a face with nose and
   mouth swapped). So the set of occupied positions has exactly the same distribution in both
   classes: only *which part sits where* differs.
3. Same overlaps and margins. Slots are accepted only if the largest part fits at every slot
   without touching another slot's largest part or the outline, so no arrangement overlaps,
   and the rejection rule (hence the geometry distribution) does not depend on the class.
4. Same outline, same context. Parts always lie inside the head in both classes (never outside:
   a part on the background would make its patches differ from a part on skin), and the head,
   clutter and noise are drawn identically.
5. Random global placement and sub-patch offsets. Head size, tilt and position are continuous,
   so parts land at every offset relative to an 8-px patch grid in both classes, and where a
   part sits in the image says little about the class (a linear classifier on patch statistics
   in grid order reaches only 0.61-0.64); where it sits relative to the others decides it.

What remains: a patch holding a part can also hold a slice of a neighbouring part or of the
outline, and which neighbour that is depends on the arrangement. ``tests/core/test_faces.py``
measures that this is small: linear classifiers on position-blind patch statistics stay near
chance (0.46-0.54 held-out accuracy over four seeds) while the same statistics read at relative
patch offsets reach 0.87-0.89.

Other properties worth knowing:
- All lengths scale with ``size / 64``; at the default 64x64 a head is about 27-37 px wide and
  an eye about 4-8 px wide, so a part covers roughly one 8-px patch (the demo models use patch 8).
  The noise is drawn last, so one generator state draws the same scene at every ``size``.
- A horizontal mirror keeps every label (the scrambled arrangements are closed under swapping
  the two eye slots), so it is a safe augmentation; a vertical flip is not.
- ``render_annotated`` also returns where the head and each part were drawn.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from attnviz.demo.faces_draw import Canvas, regular_polygon, rotated_points

CLASS_NAMES: list[str] = ["face", "scrambled", "none"]
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
_SAMPLES_STREAM = 3  # the sample images of write_samples() come from a stream no split uses
MIN_SIZE = 32
_SLOT_PAIRS = np.triu_indices(4, 1)  # the 6 pairs of the 4 slots

# Part names, and the slot order: left eye, right eye, nose, mouth.
_FACE_ORDER = ("eye", "eye", "nose", "mouth")

# The scrambled arrangements: every distinct assignment of (eye, eye, nose, mouth) to the slots
# except the face itself and the face with only nose and mouth swapped (too face-like to show the
# point). 12 distinct arrangements minus 2 leaves 10.
_SCRAMBLES: tuple[tuple[str, ...], ...] = tuple(
    arrangement
    for arrangement in sorted(set(itertools.permutations(_FACE_ORDER)))
    if arrangement not in (_FACE_ORDER, ("eye", "eye", "mouth", "nose"))
)

_SKIN_TONES = np.array(
    [
        [255, 224, 196],
        [241, 194, 150],
        [224, 172, 125],
        [198, 134, 90],
        [161, 102, 62],
        [120, 75, 45],
        [92, 58, 38],
        [255, 210, 80],  # cartoon yellow
        [150, 210, 140],  # cartoon green
    ],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array(
    [[60, 35, 20], [30, 30, 35], [40, 80, 150], [50, 110, 60], [100, 70, 30]], dtype=np.float64
)
_MOUTH_COLOURS = np.array(
    [[170, 40, 50], [130, 30, 40], [200, 70, 80], [90, 30, 30], [150, 60, 50]], dtype=np.float64
)


class PartPlacement(NamedTuple):
    """Where one drawn object sits: ``name`` in 'head', 'eye', 'nose', 'mouth', 'shape'."""

    name: str
    x: float  # centre, pixels from the left edge
    y: float  # centre, pixels from the top edge


@dataclass
class _Style:
    """How this image's parts look; sampled before (and independently of) the class."""

    skin: np.ndarray
    outline: np.ndarray
    outline_width: float
    eye_a: float  # eye semi-axes (px)
    eye_b: float
    sclera: np.ndarray
    iris: np.ndarray
    pupil_r: float
    gaze: float  # pupil offset along the eye's long axis (px)
    eye_line: float
    nose_a: float  # nose half-width / half-height (px)
    nose_b: float
    nose_colour: np.ndarray
    nose_kind: str  # 'triangle' | 'ellipse'
    mouth_a: float  # mouth half-width / half-height (px)
    mouth_b: float
    mouth_colour: np.ndarray
    mouth_kind: str  # 'smile' | 'open'
    mouth_line: float

    def footprint(self) -> tuple[float, float]:
        """Half-width and half-height of a box that holds any part."""
        return (
            max(self.eye_a + 0.5 * self.eye_line, self.nose_a, self.mouth_a + 0.5 * self.mouth_line),
            max(self.eye_b + 0.5 * self.eye_line, self.nose_b, self.mouth_b + 0.5 * self.mouth_line),
        )


@dataclass
class _Head:
    cx: float
    cy: float
    a: float  # half-width (px)
    b: float  # half-height (px)
    tilt: float  # radians, clockwise on screen


def _jitter(rng: np.random.Generator, colour: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(colour + rng.uniform(-amount, amount, size=3), 0.0, 255.0)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 255.0, size=3)


def _sample_head(rng: np.random.Generator, size: int, unit: float) -> _Head:
    a = rng.uniform(13.5, 18.5) * unit
    b = a * rng.uniform(1.08, 1.25)
    tilt = np.deg2rad(rng.uniform(-10.0, 10.0))
    # Half extents of the tilted ellipse, so the whole head (and its outline) stays inside.
    ext_x = np.hypot(a * np.cos(tilt), b * np.sin(tilt)) + 1.5 * unit
    ext_y = np.hypot(a * np.sin(tilt), b * np.cos(tilt)) + 1.5 * unit
    cx = rng.uniform(ext_x, size - ext_x)
    cy = rng.uniform(ext_y, size - ext_y)
    return _Head(cx=cx, cy=cy, a=a, b=b, tilt=tilt)


def _sample_style(rng: np.random.Generator, head: _Head, unit: float) -> _Style:
    a = head.a
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 12.0)
    if rng.random() < 0.5:
        outline = skin * rng.uniform(0.25, 0.5)
    else:
        outline = rng.uniform(10.0, 50.0, size=3)
    eye_a = rng.uniform(0.16, 0.21) * a
    eye_b = eye_a * rng.uniform(0.6, 0.78)
    pupil_r = eye_b * rng.uniform(0.6, 0.85)
    nose_kind = "triangle" if rng.random() < 0.5 else "ellipse"
    mouth_kind = "smile" if rng.random() < 0.6 else "open"
    return _Style(
        skin=skin,
        outline=outline,
        outline_width=rng.uniform(1.0, 1.8) * unit,
        eye_a=eye_a,
        eye_b=eye_b,
        sclera=rng.uniform(225.0, 255.0, size=3),
        iris=_jitter(rng, _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))], 15.0),
        pupil_r=pupil_r,
        gaze=rng.uniform(-0.4, 0.4) * (eye_a - pupil_r),
        eye_line=rng.uniform(0.5, 0.9) * unit,
        nose_a=rng.uniform(0.09, 0.13) * a,
        nose_b=rng.uniform(0.12, 0.16) * a,
        nose_colour=skin + rng.uniform(0.45, 0.7) * (outline - skin),
        nose_kind=nose_kind,
        mouth_a=rng.uniform(0.18, 0.25) * a,
        mouth_b=rng.uniform(0.08, 0.12) * a,
        mouth_colour=_jitter(rng, _MOUTH_COLOURS[rng.integers(len(_MOUTH_COLOURS))], 15.0),
        mouth_kind=mouth_kind,
        mouth_line=rng.uniform(1.1, 1.6) * unit,
    )


def _slots_valid(slots: np.ndarray, head: _Head, style: _Style, unit: float) -> bool:
    """Whether the largest part fits at every slot: no two slot boxes touch, all inside the head.

    Uses only the geometry and the style, never the class, so both classes share one geometry
    distribution.
    """
    half_w, half_h = style.footprint()
    gap = 1.2 * unit
    diff = np.abs(slots[:, None, :] - slots[None, :, :])  # (4, 4, 2)
    apart = (diff[..., 0] >= 2 * half_w + gap) | (diff[..., 1] >= 2 * half_h + gap)  # (4, 4)
    if not np.all(apart[_SLOT_PAIRS]):
        return False
    margin = 0.5 * style.outline_width + 1.2 * unit
    inner_a, inner_b = head.a - margin, head.b - margin
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * np.array([half_w, half_h])  # (4, 2)
    pts = slots[:, None, :] + corners[None, :, :]  # (4 slots, 4 corners, 2)
    return bool(np.all((pts[..., 0] / inner_a) ** 2 + (pts[..., 1] / inner_b) ** 2 <= 1.0))


def _sample_slots(
    rng: np.random.Generator, head: _Head, style: _Style, unit: float
) -> np.ndarray | None:
    """Four slot centres ``(4, 2)`` in head coordinates (untilted, px): eye, eye, nose, mouth.

    Returns None when no valid geometry was found in a bounded number of tries (the caller then
    resamples the style).
    """
    a, b = head.a, head.b
    for _ in range(40):
        sx = rng.uniform(0.34, 0.46) * a
        eye_y = -rng.uniform(0.22, 0.42) * b
        nose_y = rng.uniform(0.02, 0.18) * b
        mouth_y = rng.uniform(0.42, 0.6) * b
        slots = np.array([[-sx, eye_y], [sx, eye_y], [0.0, nose_y], [0.0, mouth_y]])  # (4, 2)
        slots += rng.uniform(-0.03, 0.03, size=(4, 2)) * a
        if _slots_valid(slots, head, style, unit):
            return slots
    return None


def _to_image(head: _Head, local: np.ndarray) -> np.ndarray:
    """Head coordinates ``(K, 2)`` -> image pixels ``(K, 2)`` (tilt, then translate)."""
    return rotated_points(local, head.cx, head.cy, head.tilt)


# -- drawing ---------------------------------------------------------------------------------


def _draw_background(canvas: Canvas, rng: np.random.Generator) -> None:
    canvas.add_gradient(rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.0, 35.0))


def _draw_shape(
    canvas: Canvas, rng: np.random.Generator, x: float, y: float, radius: float, kinds: tuple[str, ...]
) -> None:
    """One object that is not a face part: a polygon, a stroke, a cross or a ring."""
    kind = kinds[rng.integers(len(kinds))]
    colour = _random_colour(rng)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    if kind == "square":
        canvas.polygon(regular_polygon(x, y, radius, 4, angle), colour)
    elif kind == "triangle":
        canvas.polygon(regular_polygon(x, y, radius, 3, angle), colour)
    elif kind == "hexagon":
        canvas.polygon(regular_polygon(x, y, radius, 6, angle), colour)
    elif kind == "rectangle":
        half = np.array([[-1.0, -0.45], [1.0, -0.45], [1.0, 0.45], [-1.0, 0.45]]) * radius
        canvas.polygon(rotated_points(half, x, y, angle), colour)
    elif kind == "stroke":
        dx, dy = radius * np.cos(angle), radius * np.sin(angle)
        canvas.segment(x - dx, y - dy, x + dx, y + dy, rng.uniform(0.8, 2.0) * canvas.size / 64, colour)
    elif kind == "cross":
        width = max(0.35 * radius, 0.9)
        for k in range(2):
            phi = angle + k * np.pi / 2
            dx, dy = radius * np.cos(phi), radius * np.sin(phi)
            canvas.segment(x - dx, y - dy, x + dx, y + dy, width, colour)
    else:  # ring
        canvas.ellipse(x, y, radius, radius, 0.0, None, outline=(max(0.3 * radius, 0.9), colour))


_CLUTTER_KINDS = ("square", "triangle", "rectangle", "stroke", "ring", "hexagon")
_FOREIGN_KINDS = ("square", "triangle", "hexagon", "cross", "rectangle")


def _draw_clutter(canvas: Canvas, rng: np.random.Generator, count: int, r_lo: float, r_hi: float) -> None:
    unit = canvas.size / 64
    for _ in range(count):
        x, y = rng.uniform(0.0, canvas.size, size=2)
        _draw_shape(canvas, rng, x, y, rng.uniform(r_lo, r_hi) * unit, _CLUTTER_KINDS)


def _draw_head(canvas: Canvas, head: _Head, style: _Style) -> None:
    canvas.ellipse(
        head.cx, head.cy, head.a, head.b, head.tilt, style.skin, outline=(style.outline_width, style.outline)
    )


def _draw_part(canvas: Canvas, name: str, x: float, y: float, tilt: float, style: _Style) -> None:
    """Draw one face part centred on (x, y); its look never depends on where it is."""
    if name == "eye":
        canvas.ellipse(x, y, style.eye_a, style.eye_b, tilt, style.sclera)
        px, py = x + style.gaze * np.cos(tilt), y + style.gaze * np.sin(tilt)
        canvas.ellipse(px, py, style.pupil_r, style.pupil_r, 0.0, style.iris)
        canvas.ellipse(x, y, style.eye_a, style.eye_b, tilt, None, outline=(style.eye_line, style.outline))
    elif name == "nose":
        if style.nose_kind == "triangle":
            local = np.array([[0.0, -style.nose_b], [-style.nose_a, style.nose_b], [style.nose_a, style.nose_b]])
            canvas.polygon(rotated_points(local, x, y, tilt), style.nose_colour)
        else:
            canvas.ellipse(x, y, style.nose_b, style.nose_a, tilt + np.pi / 2, style.nose_colour)
    elif name == "mouth":
        # The lower half of an ellipse centred one half-height above (x, y), so the drawn mouth's
        # box is centred on (x, y).
        cx, cy = x + style.mouth_b * np.sin(tilt), y - style.mouth_b * np.cos(tilt)
        if style.mouth_kind == "smile":
            canvas.half_ellipse(
                cx, cy, style.mouth_a, 2.0 * style.mouth_b, tilt, style.mouth_colour, style.mouth_line
            )
        else:
            canvas.half_ellipse(cx, cy, style.mouth_a, 2.0 * style.mouth_b, tilt, style.mouth_colour)
    else:
        raise ValueError(f"unknown face part {name!r}")


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < MIN_SIZE:
        raise ValueError(f"image size must be an integer >= {MIN_SIZE}, got {size!r}")


def _check_class(cls: str) -> None:
    if cls not in CLASS_NAMES:
        raise ValueError(f"unknown class {cls!r}; expected one of {CLASS_NAMES}")


def render_annotated(
    cls: str, rng: np.random.Generator, size: int = 64
) -> tuple[np.ndarray, list[PartPlacement]]:
    """Draw one image of class ``cls`` and say where its head and parts are.

    Returns ``(image uint8 (size, size, 3), placements)``; ``render`` returns the same image.
    """
    _check_class(cls)
    _check_size(size)
    unit = size / 64
    canvas = Canvas(size, rng.uniform(30.0, 225.0, size=3))
    _draw_background(canvas, rng)
    _draw_clutter(canvas, rng, int(rng.integers(2, 7)), 1.8, 6.0)

    # Head, style and slots: sampled the same way for every class.
    while True:
        head = _sample_head(rng, size, unit)
        style = _sample_style(rng, head, unit)
        slots = _sample_slots(rng, head, style, unit)
        if slots is not None:
            break
    centres = _to_image(head, slots)  # (4, 2) pixels

    placements: list[PartPlacement] = []
    if cls == "none":
        if rng.random() < 0.5:
            _draw_head(canvas, head, style)
            placements.append(PartPlacement("head", head.cx, head.cy))
            # Shapes at random spots inside the head, not at the face slots, so that a 'none'
            # head never shows a face layout drawn with other shapes.
            half_w, half_h = style.footprint()
            radius_max = min(half_w, half_h * 1.3)
            spots: list[np.ndarray] = []
            for _ in range(int(rng.integers(2, 5))):
                for _try in range(20):
                    local = rng.uniform(-1.0, 1.0, size=2) * np.array([head.a, head.b]) * 0.62
                    if np.hypot(local[0] / head.a, local[1] / head.b) <= 0.62 and all(
                        np.hypot(*(local - other)) >= 2.0 * radius_max + 1.2 * unit for other in spots
                    ):
                        spots.append(local)
                        break
            for x, y in _to_image(head, np.array(spots).reshape(-1, 2)):
                radius = rng.uniform(0.6, 1.0) * radius_max
                _draw_shape(canvas, rng, x, y, radius, _FOREIGN_KINDS)
                placements.append(PartPlacement("shape", float(x), float(y)))
        else:
            count = int(rng.integers(2, 5))
            for _ in range(count):
                x, y = rng.uniform(0.0, size, size=2)
                _draw_shape(canvas, rng, x, y, rng.uniform(4.0, 10.0) * unit, _CLUTTER_KINDS)
                placements.append(PartPlacement("shape", float(x), float(y)))
    else:
        # Drawn for faces too, so that a face and a scrambled image from the same generator state
        # are identical except for which part sits in which slot.
        scramble = _SCRAMBLES[rng.integers(len(_SCRAMBLES))]
        arrangement = _FACE_ORDER if cls == "face" else scramble
        _draw_head(canvas, head, style)
        placements.append(PartPlacement("head", head.cx, head.cy))
        for name, (x, y) in zip(arrangement, centres):
            _draw_part(canvas, name, float(x), float(y), head.tilt, style)
            placements.append(PartPlacement(name, float(x), float(y)))

    canvas.add_noise(rng, rng.uniform(2.0, 8.0))
    return canvas.to_uint8(), placements


def render(cls: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Draw one image of class ``cls`` ('face' | 'scrambled' | 'none'): ``uint8 (size, size, 3)``."""
    return render_annotated(cls, rng, size)[0]


def _sample_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator of one sample, from (base seed, split stream, index): distinct per split."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def _labels(seed: int, stream: int, n: int) -> np.ndarray:
    """Class labels, balanced within every consecutive block of three (so any prefix is balanced
    to within one per class and a longer split extends a shorter one)."""
    labels = np.empty(n, dtype=np.int64)
    for block in range((n + 2) // 3):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, block, 3)))
        perm = rng.permutation(3)
        stop = min(3, n - 3 * block)
        labels[3 * block : 3 * block + stop] = perm[:stop]
    return labels


def _check_seed(seed: int) -> None:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def make_split(
    split: str, n: int, seed: int = 0, size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images of one split: ``(images uint8 (n, size, size, 3), labels int64 (n,))``.

    Labels index ``CLASS_NAMES``. Sample ``i`` of a split is drawn from the seed sequence
    (``seed``, split, ``i``), so 'train', 'val' and 'test' never share a sample seed, the same
    arguments always give the same arrays, and ``make_split(s, m)`` is a prefix of
    ``make_split(s, n)`` for ``m < n``. Classes are balanced within every block of three.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    _check_seed(seed)
    _check_size(size)
    stream = SPLITS[split]
    labels = _labels(seed, stream, n)
    images = np.empty((n, size, size, 3), dtype=np.uint8)  # (N, H, W, 3)
    for i in range(n):
        images[i] = render(CLASS_NAMES[labels[i]], _sample_rng(seed, stream, i), size)
    return images, labels


def write_samples(
    out_dir: str | Path, n_per_class: int = 4, seed: int = 0, size: int = 64, tag: str = ""
) -> list[Path]:
    """Write ``n_per_class`` PNGs per class to ``out_dir``; return their paths.

    Files are named ``face-01.png``, ``scrambled-01.png``, ``none-01.png``, ... or, with a
    ``tag`` such as 'large', ``face-large-01.png``. The images come from a seed stream that no
    split uses, so they never duplicate a training or test sample.
    """
    from PIL import Image

    _check_seed(seed)
    _check_size(size)
    if not isinstance(n_per_class, (int, np.integer)) or n_per_class < 0:
        raise ValueError(f"n_per_class must be a non-negative integer, got {n_per_class!r}")
    if tag and not all(ch.isalnum() or ch in "-_" for ch in tag):
        raise ValueError(f"tag may hold only letters, digits, '-' and '_', got {tag!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    infix = f"-{tag}" if tag else ""
    paths: list[Path] = []
    for c, cls in enumerate(CLASS_NAMES):
        for k in range(n_per_class):
            rng = _sample_rng(seed, _SAMPLES_STREAM, c * 1_000_000 + k)
            path = out / f"{cls}{infix}-{k + 1:02d}.png"
            Image.fromarray(render(cls, rng, size)).save(path)
            paths.append(path)
    return paths
