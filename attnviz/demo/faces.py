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

How face and scrambled are kept apart only by layout (the leaks this design closes). "Patch"
means a cell of an 8x8 grid laid over the image (8 px at 64x64) at any offset; finer grids
inherit every guarantee.

1. Same parts, same looks. Every image first samples one *style* (skin tone, outline, eye, nose
   and mouth sizes, colours, shapes, gaze) and one geometry, whatever its class. Face and
   scrambled both draw exactly one head with its outline, two identical eyes, one nose and one
   mouth from that style with the same code; a part never changes its look with its position.
2. Same positions. The geometry holds four *slots*: a left and a right eye slot, a nose slot and
   a mouth slot (a randomised, tilted face layout). A face puts eye, eye, nose, mouth in them; a
   scrambled image permutes the parts over the same four slots (one of the 10 arrangements that
   are neither a face nor a face with only nose and mouth swapped). The set of occupied
   positions has the same distribution in both classes: only *which part sits where* differs.
   From one generator state, a face and a scrambled image differ only inside the part boxes.
3. No patch holds two parts. Slot boxes (big enough for the largest part, soft edge included)
   are at least a patch apart along x or y, so no patch, wherever the grid falls, sees pieces of
   two parts. Otherwise patches holding e.g. an eye and the mouth, which only scrambled images
   have, give the class away (a first version leaked this way: a small ViT without position
   embeddings climbed to 0.61 on face vs scrambled and was still rising).
4. No patch holds a part and the outline. The head is made large enough that its outline stays a
   patch away from every slot box, so patches around the outline look alike in both classes
   (otherwise, e.g., a nose next to the outline happens only in scrambled images). The price:
   the head is larger than the features need and often leaves the frame (a close-up), and
   parts always sit on skin, never outside the head, in both classes.
5. Class-blind rules. Every rejection and size rule looks at the largest part, never at the
   class, so the geometry distribution is shared.
6. Sub-patch offsets and heights. Face position and tilt are continuous, so parts land at every
   offset relative to the patch grid in both classes, and the +-8 degree tilt spreads the
   height difference of the two eyes over most of a patch, so "both eyes at the same offset
   inside their patches" is only a weak cue.

What remains, and the cost at 64x64: a set model can still compare sub-patch offsets between
patches (item 6 only weakens that). And rules 3 and 4 make the face's features span about 40 px
of 64, so the face moves only about +-15 px sideways and +-9 px up or down: absolute positions
are informative too. Over four seeds (1000 training and 600 test images per class pair), a
ridge classifier on 8-px patch statistics scores 0.48-0.57 held out on face vs scrambled with
position-blind features (their sorted multiset, or their second moments), 0.90-0.94 with the
same statistics paired at relative offsets, and 0.90-0.93 with them in grid order (absolute
positions); ``tests/core/test_faces.py`` runs the first two. Larger images with the same 8-px
patch would free the position, at the cost of a ``patch`` parameter this module does not have.

Other properties worth knowing:
- All lengths scale with ``size / 64``; at 64x64 an eye is 6-8 px wide, a mouth 7-9 px, so a
  part fits in about one patch. The noise is drawn last and no rule depends on the resolution,
  so one generator state draws the same scene at every ``size``.
- A horizontal mirror keeps every label (the scrambled arrangements are closed under swapping
  the two eye slots), so it is a safe augmentation; a vertical flip is not.
- ``render_annotated`` also returns where the head and each part were drawn (part boxes bound
  every painted pixel).
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from attnviz.demo.faces_draw import Canvas, regular_polygon, rotated_points

CLASS_NAMES: list[str] = ["face", "scrambled", "none"]
SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
_SAMPLES_STREAM = 3  # the sample images of write_samples() come from a stream no split uses
MIN_SIZE = 32
MAX_SIZE = 2048  # a 2048x2048 scene takes ~50 MB while drawn; larger is a typo, not a sample
# Painted shapes reach half a pixel beyond their boundary (faces_draw); the ellipse distance is
# first-order, so allow a little more.
_SOFT_EDGE = 0.75
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
    """Where one drawn object sits: ``name`` in 'head', 'eye', 'nose', 'mouth', 'shape'.

    For face parts, ``half_w`` / ``half_h`` bound every pixel the part paints, along the image
    axes (the box the slot rules keep apart). For the head they are its semi-axes, in its own
    frame turned by ``angle``; for other shapes, their radius.
    """

    name: str
    x: float  # centre, pixels from the left edge
    y: float  # centre, pixels from the top edge
    half_w: float
    half_h: float
    angle: float = 0.0  # radians, clockwise on screen


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
    soft_edge: float  # how far painting reaches beyond a shape (px), scaled like the rest

    def footprint(self) -> tuple[float, float]:
        """Half-width and half-height (in the face's own frame) of a box holding every pixel any
        part paints, its half-pixel soft edge included."""
        return (
            max(self.eye_a + 0.5 * self.eye_line, self.nose_a, self.mouth_a + 0.5 * self.mouth_line)
            + self.soft_edge,
            max(self.eye_b + 0.5 * self.eye_line, self.nose_b, self.mouth_b + 0.5 * self.mouth_line)
            + self.soft_edge,
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


def _sample_style(rng: np.random.Generator, unit: float) -> _Style:
    skin = _jitter(rng, _SKIN_TONES[rng.integers(len(_SKIN_TONES))], 12.0)
    if rng.random() < 0.5:
        outline = skin * rng.uniform(0.25, 0.5)
    else:
        outline = rng.uniform(10.0, 50.0, size=3)
    eye_a = rng.uniform(3.0, 3.8) * unit
    eye_b = eye_a * rng.uniform(0.62, 0.78)
    pupil_r = eye_b * rng.uniform(0.6, 0.85)
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
        eye_line=rng.uniform(0.5, 0.8) * unit,
        nose_a=rng.uniform(1.6, 2.2) * unit,
        nose_b=rng.uniform(2.2, 2.8) * unit,
        nose_colour=skin + rng.uniform(0.55, 0.8) * (outline - skin),
        nose_kind="triangle" if rng.random() < 0.5 else "ellipse",
        mouth_a=rng.uniform(3.4, 4.4) * unit,
        mouth_b=rng.uniform(1.2, 1.7) * unit,
        mouth_colour=_jitter(rng, _MOUTH_COLOURS[rng.integers(len(_MOUTH_COLOURS))], 15.0),
        mouth_kind="smile" if rng.random() < 0.6 else "open",
        mouth_line=rng.uniform(0.9, 1.3) * unit,
        # Scaled with the image (more than needed above 64 px) so that the geometry, hence the
        # scene, is the same at every size.
        soft_edge=_SOFT_EDGE * unit,
    )


def _slots_apart(centres: np.ndarray, reach_w: float, reach_h: float, gap: float) -> bool:
    """Whether every two slot boxes (half extents ``reach_w``, ``reach_h`` along the image axes,
    centres ``(4, 2)``) are ``gap`` apart along x or along y, so that no axis-aligned square of
    side ``gap`` (a patch, wherever the grid falls) can touch two of them."""
    diff = np.abs(centres[:, None, :] - centres[None, :, :])  # (4, 4, 2)
    apart = (diff[..., 0] >= 2 * reach_w + gap) | (diff[..., 1] >= 2 * reach_h + gap)  # (4, 4)
    return bool(np.all(apart[_SLOT_PAIRS]))


def _sample_geometry(
    rng: np.random.Generator, style: _Style, size: int, unit: float
) -> tuple[_Head, np.ndarray, tuple[float, float]]:
    """The head and the four slot centres ``(4, 2)`` (image pixels): eye, eye, nose, mouth.

    Also returns the half extents, along the image axes, of the box any part fits in. Every
    rule here looks at the largest part only, never at the class, so face and scrambled images
    share one distribution of geometry; and the rules hold for every part at every slot:
    - slot boxes are a patch (size / 8) apart along x or y: no patch touches two parts;
    - the head outline stays a patch away from every slot box: no patch touches a part and the
      outline (the head is therefore larger than the face's features and may leave the frame);
    - every slot box lies inside the image.
    """
    gap = size / 8.0  # the patch of an 8x8 grid
    fw, fh = style.footprint()
    while True:
        tilt = np.deg2rad(rng.uniform(-8.0, 8.0))
        cos, sin = abs(np.cos(tilt)), abs(np.sin(tilt))
        reach_w, reach_h = fw * cos + fh * sin, fw * sin + fh * cos  # rotated box, image axes
        half_span = rng.uniform(9.5, 12.0) * unit  # eye centre to face axis
        eye_to_nose = rng.uniform(16.5, 20.0) * unit
        nose_to_mouth = rng.uniform(15.5, 18.5) * unit
        local = np.array(  # (4, 2) face frame, centred between eye row and mouth
            [
                [-half_span, 0.0],
                [half_span, 0.0],
                [0.0, eye_to_nose],
                [0.0, eye_to_nose + nose_to_mouth],
            ]
        )
        local[:, 1] -= 0.5 * (eye_to_nose + nose_to_mouth)
        local += rng.uniform(-0.4, 0.4, size=(4, 2)) * unit
        offsets = rotated_points(local, 0.0, 0.0, tilt)  # (4, 2) image axes, around the face centre
        if _slots_apart(offsets, reach_w, reach_h, gap):
            break

    # Place the face anywhere the four slot boxes stay inside the image (1-unit margin).
    low = -offsets.min(axis=0) + np.array([reach_w, reach_h]) + unit  # (2,)
    high = size - offsets.max(axis=0) - np.array([reach_w, reach_h]) - unit
    centre = rng.uniform(low, high)
    centres = centre + offsets  # (4, 2)

    # The smallest head (for a sampled aspect ratio and centre offset) whose outline band stays
    # a patch away from every slot box; then up to 12 % larger.
    aspect = rng.uniform(1.05, 1.2)
    shift = rng.uniform(-2.0, 2.0, size=(1, 2)) * unit  # head centre off the face centre
    head_centre = centre + rotated_points(shift, 0.0, 0.0, tilt)[0]
    reach = np.array([reach_w + gap, reach_h + gap])  # (2,)
    corners = np.array([[-1, -1], [-1, 1], [1, -1], [1, 1]]) * reach  # (4, 2)
    points = (centres[:, None, :] + corners[None, :, :]).reshape(-1, 2) - head_centre  # (16, 2)
    local_pts = rotated_points(points, 0.0, 0.0, -tilt)  # (16, 2) in the head's frame
    # How far the outline paints inwards, plus half a unit of safety.
    band = 0.5 * style.outline_width + style.soft_edge + 0.5 * unit
    a_needed = np.max(np.hypot(local_pts[:, 0], local_pts[:, 1] / aspect)) + band
    a = a_needed * rng.uniform(1.0, 1.12)
    head = _Head(cx=float(head_centre[0]), cy=float(head_centre[1]), a=a, b=aspect * a, tilt=tilt)
    return head, centres, (reach_w, reach_h)


# -- drawing ---------------------------------------------------------------------------------


def _draw_background(canvas: Canvas, rng: np.random.Generator) -> None:
    canvas.add_gradient(rng.uniform(0.0, 2.0 * np.pi), rng.uniform(0.0, 35.0))


def _draw_shape(
    canvas: Canvas,
    rng: np.random.Generator,
    x: float,
    y: float,
    radius: float,
    kinds: tuple[str, ...],
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
        width = rng.uniform(0.8, 2.0) * canvas.size / 64
        canvas.segment(x - dx, y - dy, x + dx, y + dy, width, colour)
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


def _draw_clutter(
    canvas: Canvas, rng: np.random.Generator, count: int, r_lo: float, r_hi: float
) -> None:
    unit = canvas.size / 64
    for _ in range(count):
        x, y = rng.uniform(0.0, canvas.size, size=2)
        _draw_shape(canvas, rng, x, y, rng.uniform(r_lo, r_hi) * unit, _CLUTTER_KINDS)


def _draw_head(canvas: Canvas, head: _Head, style: _Style) -> None:
    canvas.ellipse(
        head.cx,
        head.cy,
        head.a,
        head.b,
        head.tilt,
        style.skin,
        outline=(style.outline_width, style.outline),
    )


def _draw_part(canvas: Canvas, name: str, x: float, y: float, tilt: float, style: _Style) -> None:
    """Draw one face part centred on (x, y); its look never depends on where it is."""
    if name == "eye":
        canvas.ellipse(x, y, style.eye_a, style.eye_b, tilt, style.sclera)
        px, py = x + style.gaze * np.cos(tilt), y + style.gaze * np.sin(tilt)
        canvas.ellipse(px, py, style.pupil_r, style.pupil_r, 0.0, style.iris)
        ring = (style.eye_line, style.outline)
        canvas.ellipse(x, y, style.eye_a, style.eye_b, tilt, None, outline=ring)
    elif name == "nose":
        if style.nose_kind == "triangle":
            a, b = style.nose_a, style.nose_b
            local = np.array([[0.0, -b], [-a, b], [a, b]])  # (3, 2) apex up
            canvas.polygon(rotated_points(local, x, y, tilt), style.nose_colour)
        else:
            canvas.ellipse(x, y, style.nose_b, style.nose_a, tilt + np.pi / 2, style.nose_colour)
    elif name == "mouth":
        # The lower half of an ellipse centred one half-height above (x, y), so the drawn mouth's
        # box is centred on (x, y).
        cx, cy = x + style.mouth_b * np.sin(tilt), y - style.mouth_b * np.cos(tilt)
        ring_width = style.mouth_line if style.mouth_kind == "smile" else None
        canvas.half_ellipse(
            cx, cy, style.mouth_a, 2.0 * style.mouth_b, tilt, style.mouth_colour, ring_width
        )
    else:
        raise ValueError(f"unknown face part {name!r}")


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"image size must be an integer from {MIN_SIZE} to {MAX_SIZE}, got {size!r}")


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

    # Style, head and slots: sampled the same way for every class.
    style = _sample_style(rng, unit)
    head, centres, (reach_w, reach_h) = _sample_geometry(rng, style, size, unit)
    head_place = PartPlacement("head", head.cx, head.cy, head.a, head.b, head.tilt)

    placements: list[PartPlacement] = []
    if cls == "none":
        if rng.random() < 0.5:
            _draw_head(canvas, head, style)
            placements.append(head_place)
            # Other shapes at random spots of the face's area, not at the face slots, so that a
            # 'none' head never shows a face layout drawn with other shapes.
            low, high = centres.min(axis=0), centres.max(axis=0)  # (2,), (2,)
            radius_max = min(reach_w, reach_h * 1.3)
            spots: list[np.ndarray] = []
            for _ in range(int(rng.integers(2, 5))):
                for _try in range(20):
                    spot = rng.uniform(low, high)
                    if all(np.hypot(*(spot - other)) >= 2.0 * radius_max + unit for other in spots):
                        spots.append(spot)
                        break
            for x, y in spots:
                radius = rng.uniform(0.6, 1.0) * radius_max
                _draw_shape(canvas, rng, x, y, radius, _FOREIGN_KINDS)
                placements.append(PartPlacement("shape", float(x), float(y), radius, radius))
        else:
            for _ in range(int(rng.integers(2, 5))):
                x, y = rng.uniform(0.0, size, size=2)
                radius = rng.uniform(4.0, 10.0) * unit
                _draw_shape(canvas, rng, x, y, radius, _CLUTTER_KINDS)
                placements.append(PartPlacement("shape", float(x), float(y), radius, radius))
    else:
        # Drawn for faces too, so that a face and a scrambled image from the same generator state
        # are identical except for which part sits in which slot.
        scramble = _SCRAMBLES[rng.integers(len(_SCRAMBLES))]
        arrangement = _FACE_ORDER if cls == "face" else scramble
        _draw_head(canvas, head, style)
        placements.append(head_place)
        for name, (x, y) in zip(arrangement, centres):
            _draw_part(canvas, name, float(x), float(y), head.tilt, style)
            placements.append(PartPlacement(name, float(x), float(y), reach_w, reach_h, head.tilt))

    canvas.add_noise(rng, rng.uniform(2.0, 8.0))
    return canvas.to_uint8(), placements


def render(cls: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Draw one image of class ``cls`` ('face' | 'scrambled' | 'none'), uint8 (size, size, 3)."""
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
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"cannot create folder {out} ({(e.strerror or str(e)).lower()})") from e
    if not os.access(out, os.W_OK | os.X_OK):
        raise OSError(f"no permission to write in folder {out}")
    infix = f"-{tag}" if tag else ""
    paths: list[Path] = []
    for c, cls in enumerate(CLASS_NAMES):
        for k in range(n_per_class):
            rng = _sample_rng(seed, _SAMPLES_STREAM, c * 1_000_000 + k)
            path = out / f"{cls}{infix}-{k + 1:02d}.png"
            Image.fromarray(render(cls, rng, size)).save(path)
            paths.append(path)
    return paths
