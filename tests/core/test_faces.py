"""The procedural faces dataset: API contract, determinism, and the property it exists for.

The property: face and scrambled images hold the same multiset of patch contents and differ only
in layout. ``test_no_patch_holds_two_parts_or_a_part_and_the_outline`` checks the geometric rule
behind it on the placements, whose boxes
``test_face_and_scrambled_differ_only_inside_the_part_boxes`` ties to the painted pixels.
``test_bag_of_patches_cannot_tell_face_from_scrambled`` trains linear classifiers on per-patch
statistics (8-px patches, as the demo models use): on their position-blind multiset they stay
near chance, on the same statistics paired at relative patch offsets they separate the classes,
and on face vs none the position-blind ones succeed (so they are not simply too weak).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnviz.demo import CLASS_NAMES, make_split, render, render_annotated, write_samples

PATCH = 8


# -- API contract ---------------------------------------------------------------------------------


def test_class_names() -> None:
    assert CLASS_NAMES == ["face", "scrambled", "none"]


@pytest.mark.parametrize("size", [32, 64, 100, 128])
def test_make_split_shapes_and_dtypes(size: int) -> None:
    images, labels = make_split("train", 7, seed=0, size=size)
    assert images.shape == (7, size, size, 3) and images.dtype == np.uint8
    assert labels.shape == (7,) and labels.dtype == np.int64
    assert set(labels.tolist()) <= {0, 1, 2}


def test_render_shape_and_content() -> None:
    for cls in CLASS_NAMES:
        image = render(cls, np.random.default_rng(1))
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        assert image.std() > 5.0  # something was drawn, not a flat fill


def test_render_annotated_lists_the_parts_of_each_class() -> None:
    for seed in range(20):
        for cls in ("face", "scrambled"):
            image, parts = render_annotated(cls, np.random.default_rng(seed))
            names = [p.name for p in parts]
            assert sorted(names) == ["eye", "eye", "head", "mouth", "nose"]
            np.testing.assert_array_equal(image, render(cls, np.random.default_rng(seed)))
        _, parts = render_annotated("none", np.random.default_rng(seed))
        assert not {"eye", "nose", "mouth"} & {p.name for p in parts}


def test_face_layout_and_scrambled_layout() -> None:
    """Faces: eyes side by side above the nose above the mouth; scrambled: never that order."""
    for seed in range(50):
        _, parts = render_annotated("face", np.random.default_rng(seed))
        eyes = [p for p in parts if p.name == "eye"]
        nose = next(p for p in parts if p.name == "nose")
        mouth = next(p for p in parts if p.name == "mouth")
        assert abs(eyes[0].y - eyes[1].y) < 0.5 * abs(eyes[0].x - eyes[1].x)
        assert max(e.y for e in eyes) < nose.y < mouth.y
        assert min(e.x for e in eyes) < nose.x < max(e.x for e in eyes)

        _, parts = render_annotated("scrambled", np.random.default_rng(seed))
        eyes = [p for p in parts if p.name == "eye"]
        nose = next(p for p in parts if p.name == "nose")
        mouth = next(p for p in parts if p.name == "mouth")
        face_like = (
            abs(eyes[0].y - eyes[1].y) < 0.5 * abs(eyes[0].x - eyes[1].x)
            and max(e.y for e in eyes) < min(nose.y, mouth.y)
        )
        assert not face_like


def _part_boxes(parts) -> np.ndarray:
    """(K, 4) boxes x0, y0, x1, y1 of the face parts in a placement list."""
    return np.array(
        [
            (p.x - p.half_w, p.y - p.half_h, p.x + p.half_w, p.y + p.half_h)
            for p in parts
            if p.name in ("eye", "nose", "mouth")
        ]
    )


def test_face_and_scrambled_differ_only_inside_the_part_boxes() -> None:
    """From one generator state, face and scrambled share background, clutter, head, style, slots
    and noise: pixels differ only inside the part boxes (which are the same in both), so those
    boxes really bound what the parts paint."""
    for seed in range(40):
        face, face_parts = render_annotated("face", np.random.default_rng(seed))
        scrambled, scr_parts = render_annotated("scrambled", np.random.default_rng(seed))
        boxes = _part_boxes(face_parts)  # (4, 4)
        np.testing.assert_allclose(np.sort(boxes, axis=0), np.sort(_part_boxes(scr_parts), axis=0))
        rows, cols = np.nonzero(np.any(face != scrambled, axis=2))
        assert len(rows) > 20  # the arrangement did change the picture
        x, y = cols[:, None] + 0.5, rows[:, None] + 0.5  # pixel centres (K, 1)
        inside = (x > boxes[:, 0]) & (x < boxes[:, 2])  # (K, 4)
        inside &= (y > boxes[:, 1]) & (y < boxes[:, 3])
        assert inside.any(axis=1).all()


@pytest.mark.parametrize("size", [64, 128])
def test_no_patch_holds_two_parts_or_a_part_and_the_outline(size: int) -> None:
    """The leak-closing rule, checked on the placements: on an 8x8 patch grid at any offset, a
    patch that touches a part box touches no other part box and lies inside the head, clear of
    its outline band (half the outline width plus the soft edge, at most 1.4 px per 64)."""
    patch = size // 8
    unit = size / 64
    for seed in range(150):
        for cls in ("face", "scrambled"):
            _, parts = render_annotated(cls, np.random.default_rng(seed), size)
            boxes = _part_boxes(parts)
            head = next(p for p in parts if p.name == "head")
            band = 1.4 * unit + 0.5
            cos, sin = np.cos(head.angle), np.sin(head.angle)
            for offset in (0, 3, 6):
                starts = np.arange(offset - patch, size, patch)
                for i0 in starts:
                    for j0 in starts:
                        # pixel-centre extent of the patch
                        px0, px1, py0, py1 = j0 + 0.5, j0 + patch - 0.5, i0 + 0.5, i0 + patch - 0.5
                        touching = (boxes[:, 0] < px1) & (boxes[:, 2] > px0)
                        touching &= (boxes[:, 1] < py1) & (boxes[:, 3] > py0)
                        assert touching.sum() <= 1, (seed, cls, offset, i0, j0)
                        if touching.any():
                            cx = np.array([px0, px1, px0, px1]) - head.x
                            cy = np.array([py0, py0, py1, py1]) - head.y
                            u = (cx * cos + cy * sin) / (head.half_w - band)
                            v = (-cx * sin + cy * cos) / (head.half_h - band)
                            assert np.all(u * u + v * v < 1.0), (seed, cls, offset, i0, j0)


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="split"):
        make_split("training", 3)
    with pytest.raises(ValueError, match="class"):
        render("cat", np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        make_split("train", 3, size=8)
    with pytest.raises(ValueError, match="from 32 to 2048"):
        make_split("train", 1, size=100_000)  # refused before anything is allocated
    with pytest.raises(ValueError, match="n must"):
        make_split("train", -1)
    with pytest.raises(ValueError, match="seed"):
        make_split("train", 3, seed=-5)
    images, labels = make_split("test", 0)
    assert images.shape == (0, 64, 64, 3) and labels.shape == (0,)


def test_rasteriser_areas_and_subpixel_centres() -> None:
    """Soft-edged shapes cover their true area and sit at their sub-pixel position."""
    from attnviz.demo.faces_draw import Canvas

    def drawn(draw) -> np.ndarray:
        canvas = Canvas(40, (0.0, 0.0, 0.0))
        draw(canvas)
        return canvas.pixels[:, :, 0].astype(np.float64) / 255.0  # coverage (H, W)

    ys, xs = np.mgrid[0:40, 0:40] + 0.5
    disc = drawn(lambda c: c.ellipse(15.3, 21.7, 6.0, 6.0, 0.0, (255, 255, 255)))
    assert disc.sum() == pytest.approx(np.pi * 36.0, rel=0.01)
    assert (disc * xs).sum() / disc.sum() == pytest.approx(15.3, abs=0.02)
    assert (disc * ys).sum() / disc.sum() == pytest.approx(21.7, abs=0.02)
    tilted = drawn(lambda c: c.ellipse(20.0, 20.0, 9.0, 4.0, 0.6, (255, 255, 255)))
    assert tilted.sum() == pytest.approx(np.pi * 36.0, rel=0.02)
    corners = [(10.2, 10.2), (18.2, 10.2), (18.2, 18.2), (10.2, 18.2)]
    square = drawn(lambda c: c.polygon(corners, (255, 0, 0)))
    assert square.sum() == pytest.approx(64.0, rel=0.01)
    stroke = drawn(lambda c: c.segment(5.0, 30.0, 35.0, 30.0, 2.0, (255, 0, 0)))
    assert stroke.sum() == pytest.approx(30.0 * 2.0 + np.pi, rel=0.03)


# -- determinism and splits -----------------------------------------------------------------------


def test_same_seed_same_arrays_different_seed_different() -> None:
    a_img, a_lab = make_split("val", 9, seed=3)
    b_img, b_lab = make_split("val", 9, seed=3)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, _ = make_split("val", 9, seed=4)
    assert not np.array_equal(a_img, c_img)
    np.testing.assert_array_equal(
        render("face", np.random.default_rng(11)), render("face", np.random.default_rng(11))
    )
    assert not np.array_equal(
        render("face", np.random.default_rng(11)), render("face", np.random.default_rng(12))
    )


def test_a_shorter_split_is_a_prefix_of_a_longer_one() -> None:
    short_img, short_lab = make_split("train", 5, seed=2)
    long_img, long_lab = make_split("train", 11, seed=2)
    np.testing.assert_array_equal(short_img, long_img[:5])
    np.testing.assert_array_equal(short_lab, long_lab[:5])


def test_the_scene_does_not_depend_on_the_resolution() -> None:
    """The same generator state draws the same scene at 128 px as at 64 px (only finer)."""

    def blocks(image: np.ndarray, k: int) -> np.ndarray:  # mean over k x k blocks: (n, n, 3)
        n = image.shape[0] // k
        return image.astype(np.float64).reshape(n, k, n, k, 3).mean(axis=(1, 3))

    for seed in range(5):
        small = blocks(render("face", np.random.default_rng(seed), 64), 4)  # (16, 16, 3)
        large = blocks(render("face", np.random.default_rng(seed), 128), 8)  # (16, 16, 3)
        other = blocks(render("face", np.random.default_rng(seed + 100), 64), 4)
        # Block means average the pixel noise away; what is left is the scene.
        assert np.abs(large - small).mean() < 3.0 < 10.0 < np.abs(other - small).mean()


def _hashes(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(image.tobytes()).hexdigest() for image in images}


def test_class_balance() -> None:
    _, labels = make_split("test", 30, seed=0)
    assert np.bincount(labels, minlength=3).tolist() == [10, 10, 10]
    _, labels = make_split("test", 31, seed=0)
    counts = np.bincount(labels, minlength=3)
    assert counts.sum() == 31 and counts.max() - counts.min() <= 1


# -- the dataset's purpose: layout, not content, separates face from scrambled -------------------


@pytest.fixture(scope="module")
def data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        "train": make_split("train", 1500, seed=7),
        "val": make_split("val", 300, seed=7),
        "test": make_split("test", 900, seed=7),
    }


def test_splits_are_disjoint_and_balanced(data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    seen: list[set[str]] = []
    for split in ("train", "val", "test"):
        images, labels = data[split]
        hashes = _hashes(images[:300])
        assert len(hashes) == 300  # no duplicate inside a split either
        seen.append(hashes)
        counts = np.bincount(labels, minlength=3)
        assert counts.tolist() == [len(labels) // 3] * 3
    assert not (seen[0] & seen[1]) and not (seen[0] & seen[2]) and not (seen[1] & seen[2])


def _patch_stats(images: np.ndarray) -> np.ndarray:
    """Per-patch statistics ``(N, g, g, 7)``: mean R, G, B; luminance std, min, max; edge energy."""
    x = images.astype(np.float32) / 255.0  # (N, H, W, 3)
    n, h, w, _ = x.shape
    g = h // PATCH
    lum = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (N, H, W)
    edges = np.zeros_like(lum)
    edges[:, :, 1:] += np.abs(np.diff(lum, axis=2))
    edges[:, 1:, :] += np.abs(np.diff(lum, axis=1))

    def patches(a: np.ndarray) -> np.ndarray:  # (N, H, W, ...) -> (N, g, g, P*P, ...)
        a = a.reshape(n, g, PATCH, g, PATCH, *a.shape[3:])  # (N, g, P, g, P, ...)
        a = np.moveaxis(a, 2, 3)  # (N, g, g, P, P, ...)
        return a.reshape(n, g, g, PATCH * PATCH, *a.shape[5:])

    lum_p = patches(lum)  # (N, g, g, P*P)
    return np.concatenate(
        [
            patches(x).mean(axis=3),  # (N, g, g, 3)
            lum_p.std(axis=3)[..., None],
            lum_p.min(axis=3)[..., None],
            lum_p.max(axis=3)[..., None],
            patches(edges).mean(axis=3)[..., None],
        ],
        axis=-1,
    )


def _sorted_multiset(stats: np.ndarray) -> np.ndarray:
    """Position-blind: each statistic's values over the patches, sorted. ``(N, g*g*7)``."""
    n, g, _, k = stats.shape
    return np.sort(stats.reshape(n, g * g, k), axis=1).reshape(n, -1)


def _offset_cooccurrence(stats: np.ndarray, reach: int) -> np.ndarray:
    """Mean over patch pairs at each relative offset (dy, dx), |dy|, |dx| <= reach, of the outer
    product of their (per-image centred) statistics. reach 0 is position-blind (a moment of the
    multiset); reach > 0 sees relative layout but not absolute position. ``(N, offsets*7*7)``."""
    n, g, _, k = stats.shape
    z = stats - stats.mean(axis=(1, 2), keepdims=True)  # (N, g, g, k)
    feats = []
    for dy in range(reach + 1):
        for dx in range(-reach, reach + 1):
            if dy == 0 and dx < 0:
                continue  # (0, -dx) is the transpose of (0, dx)
            a = z[:, : g - dy, max(0, -dx) : g - max(0, dx)]
            b = z[:, dy:, max(0, dx) : g + min(0, dx)]
            feats.append(np.einsum("nyxi,nyxj->nij", a, b).reshape(n, k * k) / (g * g))
    return np.concatenate(feats, axis=1)


def _ridge_accuracy(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    """Held-out accuracy of a ridge classifier (targets +-1) whose penalty is picked on the last
    fifth of the training set."""
    mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    def fit(x: np.ndarray, y: np.ndarray, lam: float) -> np.ndarray:
        x1 = np.concatenate([x, np.ones((len(x), 1))], axis=1)  # (n, d + 1)
        gram = x1.T @ x1 + lam * np.eye(x1.shape[1])
        gram[-1, -1] -= lam  # no penalty on the bias
        return np.linalg.solve(gram, x1.T @ (2.0 * y - 1.0))

    def accuracy(w: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((x @ w[:-1] + w[-1] > 0) == (y > 0.5)))

    cut = int(0.8 * len(x_train))
    lams = (0.1, 1.0, 10.0, 100.0, 1000.0)
    scores = [
        accuracy(fit(x_train[:cut], y_train[:cut], lam), x_train[cut:], y_train[cut:])
        for lam in lams
    ]
    best = lams[int(np.argmax(scores))]
    return accuracy(fit(x_train, y_train, best), x_test, y_test)


def _binary(
    data: dict[str, tuple[np.ndarray, np.ndarray]],
    stats: dict[str, np.ndarray],
    positive: str,
    negative: str,
    featurise,
) -> float:
    sets = []
    for split in ("train", "test"):
        labels = data[split][1]
        keep = np.isin(labels, [CLASS_NAMES.index(positive), CLASS_NAMES.index(negative)])
        target = (labels[keep] == CLASS_NAMES.index(positive)).astype(np.float64)
        sets.append((featurise(stats[split][keep]), target))
    (x_train, y_train), (x_test, y_test) = sets
    return _ridge_accuracy(x_train, y_train, x_test, y_test)


def test_bag_of_patches_cannot_tell_face_from_scrambled(
    data: dict[str, tuple[np.ndarray, np.ndarray]],
) -> None:
    # 1000 training and 600 test images per pair of classes.
    stats = {split: _patch_stats(data[split][0]) for split in ("train", "test")}
    bag_sorted = _binary(data, stats, "face", "scrambled", _sorted_multiset)
    bag_moments = _binary(data, stats, "face", "scrambled", lambda s: _offset_cooccurrence(s, 0))
    layout = _binary(data, stats, "face", "scrambled", lambda s: _offset_cooccurrence(s, 2))
    control_sorted = _binary(data, stats, "face", "none", _sorted_multiset)
    control_moments = _binary(data, stats, "face", "none", lambda s: _offset_cooccurrence(s, 0))
    summary = (
        f"face/scrambled: sorted multiset {bag_sorted:.3f}, offset-0 moments {bag_moments:.3f}, "
        f"offsets <= 2 {layout:.3f}; face/none: sorted {control_sorted:.3f}, "
        f"moments {control_moments:.3f}"
    )
    # Position-blind features: near chance between face and scrambled ...
    assert bag_sorted < 0.60 and bag_moments < 0.60, summary
    # ... but the same statistics read at relative offsets separate them ...
    assert layout > 0.78, summary
    # ... and the position-blind features are strong enough to find a real content difference.
    assert control_sorted > 0.80 and control_moments > 0.80, summary


# -- sample images --------------------------------------------------------------------------------


def test_write_samples(tmp_path: Path) -> None:
    paths = write_samples(tmp_path / "out", n_per_class=2, seed=0, size=48)
    names = sorted(p.name for p in paths)
    assert names == sorted(f"{c}-{k:02d}.png" for c in CLASS_NAMES for k in (1, 2))
    first = np.asarray(Image.open(tmp_path / "out" / "face-01.png"))
    assert first.shape == (48, 48, 3) and first.dtype == np.uint8
    assert [p.name for p in write_samples(tmp_path, 1, tag="large")][0] == "face-large-01.png"
    # Sample images are not training images.
    train, _ = make_split("train", 30, seed=0, size=48)
    assert not _hashes(np.stack([np.asarray(Image.open(p)) for p in paths])) & _hashes(train)
    with pytest.raises(ValueError, match="tag"):
        write_samples(tmp_path, 1, tag="../x")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        write_samples(tmp_path / "notes.txt", 1)
    with pytest.raises(ValueError, match="size"):
        write_samples(tmp_path / "huge", 1, size=100_000)
    assert not (tmp_path / "huge").exists()  # nothing created for a refused call


def test_make_faces_cli_writes_samples_and_refuses_bad_input(tmp_path: Path, capsys) -> None:
    from attnviz.cli import main

    assert main(["make-faces", "--out", str(tmp_path / "s"), "--n", "1", "--size", "48"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == [f"{c}-01.png" for c in sorted(CLASS_NAMES)]
    capsys.readouterr()
    for argv, said in ((["--n", "0"], "--n must be at least 1"), (["--size", "100000"], "from 32 to 2048")):
        assert main(["make-faces", "--out", str(tmp_path / "t"), *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0]
        assert not (tmp_path / "t").exists()
