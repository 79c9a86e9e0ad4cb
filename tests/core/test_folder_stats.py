"""Folder statistics (attnviz.session.folder_stats) and the token-norm outlier rule (attnviz.analysis.stats),
without Qt: running means over a folder equal the means of the per-image statistics, bad files are listed
and skipped, cancelling stops the run."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from attnviz.analysis.stats import (OUTLIER_K, OUTLIER_RATIO, dataset_head_stats, head_stats, image_head_tables,
                                    norm_outliers, token_norms)
from attnviz.images import load_image, preprocess
from attnviz.model import load_model
from attnviz.session import Session, Worker
from attnviz.session.folder_stats import FolderRunner, RunningMoments, folder_head_stats, image_files
from attnviz.session.products import Unavailable

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("face-01.png", "none-01.png", "scrambled-01.png")


@pytest.fixture(scope="module")
def vit():
    return load_model(str(ROOT / "models/faces-vit.safetensors"), device="cpu")


@pytest.fixture(scope="module")
def swin():
    return load_model(str(ROOT / "models/faces-swin.safetensors"), device="cpu")


@pytest.fixture
def folder(tmp_path):
    """Three demo images, one file with an image's name that is not an image, one text file."""
    for name in IMAGES:
        shutil.copy(ROOT / "assets/images" / name, tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"this is not a PNG file at all")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def _per_image(model, folder):
    """Each readable image captured on its own: the head statistics of every image, in file order."""
    return [head_stats(model.capture(preprocess(load_image(folder / n), model.info.preprocess)), 0)
            for n in sorted(IMAGES)]


def test_image_files_are_sorted_and_skip_hidden(folder):
    (folder / ".hidden.png").write_bytes(b"x")
    (folder / "sub").mkdir()
    assert [p.name for p in image_files(str(folder))] == sorted([*IMAGES, "broken.png", "notes.txt"])
    with pytest.raises(ValueError, match="not a folder"):
        image_files(str(folder / "face-01.png"))


def test_running_moments_match_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(11, 4, 3))  # (images, L, H)
    data[:, 2, 1:] = np.nan  # a block with one head
    m = RunningMoments()
    for part in (data[:4], data[4:5], data[5:]):
        m.add(part)
    assert m.n == 11
    np.testing.assert_allclose(m.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(m.std(), data.std(0), rtol=1e-12)
    assert np.isnan(m.mean[2, 1:]).all() and np.isnan(m.std()[2, 1:]).all()


def test_image_tables_rows_are_head_stats_of_each_image(vit, folder):
    xb = torch.stack([preprocess(load_image(folder / n), vit.info.preprocess) for n in IMAGES])  # (3, 3, H, W)
    cap = vit.capture(xb)
    md, ent, share, heads = image_head_tables(cap)
    assert md.shape == (3, len(cap.blocks), max(heads))
    for b in range(3):
        st = head_stats(cap, b)
        np.testing.assert_array_equal(md[b], st.mean_distance)
        np.testing.assert_array_equal(ent[b], st.entropy)
        np.testing.assert_array_equal(share[b], st.prefix_share)


@pytest.mark.parametrize("which", ["vit", "swin"])
def test_folder_means_equal_the_mean_of_per_image_statistics(which, vit, swin, folder):
    model = vit if which == "vit" else swin
    partials = []
    res = folder_head_stats(model, str(folder), batch_size=2, on_partial=partials.append)
    assert res.finished and not res.cancelled
    assert res.files == 5 and res.done == 5 and res.images == 3
    assert [u.name for u in res.unreadable] == ["broken.png", "notes.txt"]
    assert "not an image" in res.unreadable[0].reason and ".txt" in res.unreadable[1].reason
    assert "broken.png" in res.message() and "notes.txt" in res.message()
    assert [p.images for p in partials] == [1, 3]  # the first image alone (it sizes the batches), then two
    singles = _per_image(model, folder)
    for name in ("mean_distance", "entropy", "prefix_share"):
        per = np.stack([getattr(s, name) for s in singles])  # (3, L, H)
        got, spread = getattr(res.mean, name), getattr(res.std, name)
        np.testing.assert_allclose(got, per.mean(0), rtol=1e-5, atol=1e-6, equal_nan=True)
        np.testing.assert_allclose(spread, per.std(0), rtol=1e-3, atol=1e-5, equal_nan=True)
        real = np.isfinite(got)
        assert (np.isnan(spread) == ~real).all()
        if real.any():
            assert (spread[real] > 0).any()  # the three images differ
    if which == "swin":
        assert np.isnan(res.mean.prefix_share).all()
    # and what analysis.stats computes over the same captures
    captures = (model.capture(preprocess(load_image(folder / n), model.info.preprocess)) for n in sorted(IMAGES))
    ref = dataset_head_stats(captures)
    np.testing.assert_allclose(res.mean.mean_distance, ref.mean_distance, rtol=1e-5, equal_nan=True)
    np.testing.assert_allclose(res.mean.entropy, ref.entropy, rtol=1e-5, equal_nan=True)
    assert res.mean.num_heads == ref.num_heads and res.mean.images == ref.images == 3


def test_cancel_stops_the_run(vit, folder):
    partials = []
    res = folder_head_stats(vit, str(folder), batch_size=1, on_partial=partials.append,
                            cancel=lambda: len(partials) >= 1)
    assert res.cancelled and not res.finished
    assert res.images == 1 and len(partials) == 1 and res.done < res.files
    first = _per_image(vit, folder)[0]
    np.testing.assert_allclose(res.mean.entropy, first.entropy, rtol=1e-5)


def test_a_batch_too_large_for_the_device_is_run_in_halves(vit, folder):
    class Tight:  # a device that holds one image per forward
        device, info = vit.device, vit.info

        def capture(self, x, use_pos_embed=True):
            if x.shape[0] > 1:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return vit.capture(x, use_pos_embed=use_pos_embed)

    res = folder_head_stats(Tight(), str(folder), batch_size=4)
    ref = folder_head_stats(vit, str(folder), batch_size=4)
    assert res.images == 3 and res.batch_size == 1 and ref.batch_size == 4
    np.testing.assert_allclose(res.mean.entropy, ref.mean.entropy, rtol=1e-5)


def test_batches_stay_under_the_memory_budget(vit, folder, monkeypatch):
    from attnviz.session import folder_stats

    x = preprocess(load_image(folder / IMAGES[0]), vit.info.preprocess)
    per_image = sum(b.attn.numel() * 4 for b in vit.capture(x).blocks)  # float32 bytes of one image's capture
    assert folder_stats.CAPTURE_BUDGET // per_image >= 32  # the demo model: a whole GPU batch fits
    monkeypatch.setattr(folder_stats, "CAPTURE_BUDGET", 2 * per_image + 1)
    partials = []
    res = folder_head_stats(vit, str(folder), batch_size=32, on_partial=partials.append)
    assert res.batch_size == 2 and [p.images for p in partials] == [1, 3]


def test_a_folder_without_images(vit, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    res = folder_head_stats(vit, str(tmp_path))
    assert res.finished and res.images == 0 and res.mean is None
    assert [u.name for u in res.unreadable] == ["broken.jpg"]


def test_runner_streams_partial_results_and_cancels(vit, folder):
    s = Session(Worker(synchronous=True), device="cpu")
    s.doc.model = vit
    runner = FolderRunner(s)
    updates, done, errors = [], [], []
    runner.start(str(folder), updates.append, done.append, errors.append, batch_size=2)
    assert errors == [] and len(done) == 1 and done[0].finished
    assert [u.images for u in updates] == [1, 3]  # delivered while it ran
    # a cancel from the consumer (here: on the first update) stops the run; its last partial result stays
    updates.clear()
    done.clear()
    runner.start(str(folder), lambda snap: (updates.append(snap), runner.cancel()), done.append, errors.append,
                 batch_size=1)
    assert done == [] and errors == [] and [u.images for u in updates] == [1]
    assert runner.latest.cancelled and runner.latest.images == 1 and not runner.running()


def test_runner_needs_a_model():
    with pytest.raises(ValueError, match="open a model"):
        FolderRunner(Session(Worker(synchronous=True))).start(".", print, print, print)


# ---------------------------------------------------------------------------------------------
# token norms


def test_outlier_rule_by_hand():
    v = np.array([[10.0, 11.0, 9.0, 10.0], [10.0, 12.0, 40.0, 10.5]])
    o = norm_outliers(v)
    med = 10.25  # median of the eight values
    mad = float(np.median(np.abs(v - med)))
    assert o.median == med and o.mad == mad
    assert o.threshold == max(med + OUTLIER_K * mad, OUTLIER_RATIO * med)
    assert o.mask.tolist() == [[False, False, False, False], [False, False, True, False]]
    # a block whose norms barely vary: a tiny MAD alone would flag 5.6 against 5.5, the ratio does not
    flat = np.array([5.5, 5.5, 5.51, 5.49, 5.6, 12.0])
    assert norm_outliers(flat).mask.tolist() == [False] * 5 + [True]
    assert not norm_outliers(np.full(4, 3.0)).mask.any()
    assert not norm_outliers(np.array([1.0, np.nan, 100.0, 1.0, 1.0])).mask[1]


@pytest.mark.parametrize("which", ["vit", "swin"])
def test_token_norms_are_the_captures_norms_on_the_grid(which, vit, swin):
    model = vit if which == "vit" else swin
    x = preprocess(load_image(ROOT / "assets/images/face-01.png"), model.info.preprocess)
    cap = model.capture(x)
    P = cap.num_prefix_tokens
    for b, blk in enumerate(cap.blocks):
        tn = token_norms(cap, b)
        gh, gw = blk.grid_size
        n = blk.token_norms[0].double().numpy()  # (P + gh*gw,)
        np.testing.assert_array_equal(tn.map, n[P:].reshape(gh, gw))
        np.testing.assert_array_equal(tn.prefix, n[:P])
        thr = max(np.median(tn.map) + OUTLIER_K * np.median(np.abs(tn.map - np.median(tn.map))),
                  OUTLIER_RATIO * np.median(tn.map))
        np.testing.assert_array_equal(tn.outliers.mask, tn.map > thr)
    assert token_norms(cap, 0).prefix_names == (["cls"] if which == "vit" else [])
    with pytest.raises(ValueError, match="block 99"):
        token_norms(cap, 99)


def test_token_norms_product_says_when_the_capture_has_none(vit):
    from attnviz.session import stats_products
    from attnviz.session.products import Context
    from attnviz.session.query import Geometry

    x = preprocess(load_image(ROOT / "assets/images/face-01.png"), vit.info.preprocess)
    cap = vit.capture(x)
    ctx = Context(cap, vit, x[None], Geometry.of(cap))
    assert stats_products.token_norms(ctx, 2).map.shape == tuple(cap.blocks[2].grid_size)
    cap.blocks[2].token_norms = None
    from attnviz.session.products import PRODUCTS, Products

    assert Products._compute(PRODUCTS["token_norms"], ctx, {"block": 2}, None) == Unavailable(
        "this capture holds no token norms (the network did not record its block outputs)")
