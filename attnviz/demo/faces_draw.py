"""A tiny anti-aliased rasteriser for the procedural faces dataset (numpy only).

Every shape is described by a signed distance ``sd`` (pixels; negative inside) evaluated at pixel
centres, and painted with coverage ``clip(0.5 - sd, 0, 1)``: a one-pixel soft edge that gives
sub-pixel positioning and anti-aliasing without supersampling. Each shape is evaluated only over
its bounding box, so drawing cost scales with the shape's area, not the image's; that keeps a
64x64 image with twenty shapes at about a millisecond.

Coordinates: ``x`` to the right, ``y`` down, in pixels, pixel ``(i, j)`` covering
``[j, j+1) x [i, i+1)`` so its centre is ``(j + 0.5, i + 0.5)``. Colours are RGB in 0..255.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

# A signed-distance function of local pixel-centre coordinates (xs (1, w), ys (h, 1)) -> (h, w).
DistanceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


class Canvas:
    """A float32 RGB image being painted, shape ``(size, size, 3)``."""

    def __init__(self, size: int, background: Sequence[float]) -> None:
        self.size = size
        self.pixels = np.empty((size, size, 3), dtype=np.float32)  # (H, W, 3)
        self.pixels[:] = np.asarray(background, dtype=np.float32)
        self._centres = np.arange(size, dtype=np.float32) + np.float32(0.5)  # pixel centres

    # -- whole-image effects -------------------------------------------------------------------

    def add_gradient(self, direction: float, amplitude: float) -> None:
        """Add a linear brightness ramp of +-``amplitude`` along ``direction`` (radians)."""
        coords = (np.arange(self.size, dtype=np.float32) + 0.5) / self.size - 0.5
        ramp = np.cos(direction) * coords[None, :] + np.sin(direction) * coords[:, None]  # (H, W)
        self.pixels += (2.0 * amplitude * ramp)[:, :, None]

    def add_noise(self, rng: np.random.Generator, sigma: float) -> None:
        """Add i.i.d. pixel noise of standard deviation ``sigma`` (0..255 units).

        Triangular noise (the sum of two uniforms): bell-shaped enough for a picture and several
        times cheaper to draw than Gaussian noise.
        """
        shape = self.pixels.shape
        noise = rng.random(shape, dtype=np.float32)
        noise += rng.random(shape, dtype=np.float32)
        noise -= np.float32(1.0)
        noise *= np.float32(sigma * np.sqrt(6.0))  # var(u1 + u2) = 1/6
        self.pixels += noise

    def to_uint8(self) -> np.ndarray:
        """The image as ``uint8 (H, W, 3)``, rounded and clipped."""
        return np.clip(np.rint(self.pixels), 0, 255).astype(np.uint8)

    # -- generic painting ----------------------------------------------------------------------

    def paint(
        self,
        bbox: tuple[float, float, float, float],
        distance: DistanceFn,
        colour: Sequence[float],
        outline: tuple[float, Sequence[float]] | None = None,
    ) -> None:
        """Blend ``colour`` where ``distance`` < 0 inside ``bbox = (x0, y0, x1, y1)`` (pixels).

        ``outline = (width, colour)`` also strokes the boundary ``distance == 0`` on top, from
        the same distance evaluation.
        """
        j0 = max(int(bbox[0]) - 2, 0)
        i0 = max(int(bbox[1]) - 2, 0)
        j1 = min(int(bbox[2]) + 3, self.size)
        i1 = min(int(bbox[3]) + 3, self.size)
        if j1 <= j0 or i1 <= i0:
            return
        xs = self._centres[None, j0:j1]  # (1, w)
        ys = self._centres[i0:i1, None]  # (h, 1)
        sd = distance(xs, ys)  # (h, w)
        region = self.pixels[i0:i1, j0:j1]  # (h, w, 3) view
        if colour is not None:
            _blend(region, np.float32(0.5) - sd, colour)
        if outline is not None:
            width, line_colour = outline
            _blend(region, np.float32(0.5 + 0.5 * width) - np.abs(sd), line_colour)

    # -- shapes --------------------------------------------------------------------------------

    def ellipse(
        self,
        cx: float,
        cy: float,
        a: float,
        b: float,
        angle: float,
        colour: Sequence[float] | None,
        outline: tuple[float, Sequence[float]] | None = None,
    ) -> None:
        """Ellipse with semi-axes ``a`` (along ``angle``) and ``b``: filled with ``colour``
        (None: not filled) and/or stroked with ``outline = (width, colour)``."""
        r = max(a, b) + (0.5 * outline[0] if outline else 0.0)
        distance = _ellipse_sd(cx, cy, a, b, angle)
        self.paint((cx - r, cy - r, cx + r, cy + r), distance, colour, outline)

    def half_ellipse(
        self,
        cx: float,
        cy: float,
        a: float,
        b: float,
        angle: float,
        colour: Sequence[float],
        ring_width: float | None = None,
    ) -> None:
        """The lower half (in its own frame) of an ellipse: filled, or a ring (a smile)."""
        r = max(a, b) + (ring_width or 0.0)
        ellipse = _ellipse_sd(cx, cy, a, b, angle)
        cos, sin = np.cos(angle), np.sin(angle)

        def distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            above = (x - cx) * sin - (y - cy) * cos  # < 0 on the lower side
            sd = ellipse(x, y)
            if ring_width is not None:
                sd = np.abs(sd) - 0.5 * ring_width
            return np.maximum(sd, above)

        self.paint((cx - r, cy - r, cx + r, cy + r), distance, colour)

    def polygon(self, vertices: Sequence[Sequence[float]], colour: Sequence[float]) -> None:
        """Filled convex polygon; ``vertices`` ``(K, 2)`` as (x, y) in either winding order.

        Signed distance: inside, the largest signed distance to the edge lines; outside, the
        distance to the nearest edge segment (exact, so sharp corners get no halo).
        """
        pts = [(float(px), float(py)) for px, py in vertices]
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        edges = []  # (x0, y0, dx, dy, 1 / length^2, nx, ny, offset), normal pointing outwards
        for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1]):
            dx, dy = x1 - x0, y1 - y0
            length2 = max(dx * dx + dy * dy, 1e-12)
            nx, ny = dy / length2**0.5, -dx / length2**0.5
            if nx * (mx - x0) + ny * (my - y0) > 0:  # whatever the winding
                nx, ny = -nx, -ny
            edges.append((x0, y0, dx, dy, 1.0 / length2, nx, ny, nx * x0 + ny * y0))

        def distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            inside = None  # largest signed distance to an edge line (h, w)
            outside = None  # distance to the nearest edge segment (h, w)
            for x0, y0, dx, dy, inv_length2, nx, ny, off in edges:
                line = nx * x + ny * y - off
                px, py = x - x0, y - y0
                t = np.clip((px * dx + py * dy) * inv_length2, 0.0, 1.0)
                seg = np.hypot(px - t * dx, py - t * dy)
                inside = line if inside is None else np.maximum(inside, line)
                outside = seg if outside is None else np.minimum(outside, seg)
            return np.where(inside > 0, outside, inside)

        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        self.paint((min(xs), min(ys), max(xs), max(ys)), distance, colour)

    def segment(
        self, x0: float, y0: float, x1: float, y1: float, width: float, colour: Sequence[float]
    ) -> None:
        """A straight stroke with round caps, ``width`` pixels wide."""
        dx, dy = x1 - x0, y1 - y0
        inv_length2 = 1.0 / max(dx * dx + dy * dy, 1e-12)
        half = 0.5 * width

        def distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            px, py = x - x0, y - y0  # (1, w), (h, 1)
            t = np.clip((px * dx + py * dy) * inv_length2, 0.0, 1.0)  # (h, w)
            return np.hypot(px - t * dx, py - t * dy) - half

        self.paint(
            (min(x0, x1) - half, min(y0, y1) - half, max(x0, x1) + half, max(y0, y1) + half),
            distance,
            colour,
        )


def _blend(region: np.ndarray, cover: np.ndarray, colour: Sequence[float]) -> None:
    """region (h, w, 3) += clip(cover, 0, 1) * (colour - region), in place."""
    np.maximum(cover, 0.0, out=cover)
    np.minimum(cover, 1.0, out=cover)
    change = np.asarray(colour, dtype=np.float32) - region  # (h, w, 3)
    change *= cover[:, :, None]
    region += change


def _ellipse_sd(cx: float, cy: float, a: float, b: float, angle: float) -> DistanceFn:
    """First-order signed distance to an ellipse: f / |grad f| with f = u^2 + v^2 - 1.

    Exact on the boundary to first order, which is all a one-pixel soft edge needs.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    ua, ub = cos / a, sin / a  # u = ((x - cx) cos + (y - cy) sin) / a
    va, vb = -sin / b, cos / b  # v = (-(x - cx) sin + (y - cy) cos) / b
    ia, ib = 1.0 / a, 1.0 / b

    def distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        dx, dy = x - cx, y - cy  # (1, w), (h, 1)
        u = dx * ua + dy * ub  # (h, w)
        v = dx * va + dy * vb
        f = u * u + v * v - 1.0
        u *= ia
        v *= ib
        grad = np.sqrt(u * u + v * v)
        grad *= 2.0
        grad += 1e-6
        f /= grad
        return f

    return distance


def regular_polygon(
    cx: float, cy: float, radius: float, sides: int, angle: float
) -> list[tuple[float, float]]:
    """Vertices ``(sides, 2)`` of a regular polygon of circumradius ``radius``."""
    step = 2.0 * math.pi / sides
    return [
        (cx + radius * math.cos(angle + k * step), cy + radius * math.sin(angle + k * step))
        for k in range(sides)
    ]


def rotated_points(points: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """``points`` ``(K, 2)`` relative to ``(cx, cy)``, rotated by ``angle`` and placed there."""
    cos, sin = np.cos(angle), np.sin(angle)
    rot = np.array([[cos, -sin], [sin, cos]], dtype=np.float64)
    return points @ rot.T + np.array([cx, cy])
