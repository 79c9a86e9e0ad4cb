"""`attnviz train-demo` on a tiny recipe: it reports progress, writes what the loader reads with a card
that describes the saved weights, and gives the same weights for the same seed in one process."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from safetensors.torch import load_file

from attnviz.demo.faces import CLASS_NAMES, make_split
from attnviz.demo.train import DEMOS, MODEL_RECIPES, Recipe, recipe_for, to_input, train_demos
from attnviz.model import load_model

TINY = Recipe(n_train=48, n_val=12, n_test=24, epochs=2, batch_size=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    lines: list[str] = []
    results = train_demos(out, recipe=TINY, log=lines.append)
    return out, lines, results


def test_every_demo_is_written_in_the_users_format(trained):
    """Each file loads through the users' loader, and its card's test accuracy is what the saved weights
    score on the regenerated test split (the best epoch was restored before saving)."""
    out, _, results = trained
    assert set(results) == set(DEMOS)
    imgs, labels = make_split("test", TINY.n_test, seed=TINY.seed)
    x, y = to_input(imgs), torch.from_numpy(labels)
    for name in DEMOS:
        model = load_model(str(out / f"{name}.safetensors"), device="cpu")
        assert model.info.class_names == CLASS_NAMES
        assert type(model.info.config) is type(DEMOS[name])
        with torch.inference_mode():
            acc = float((model.net(x).argmax(-1) == y).float().mean())
        card = (out / f"{name}.md").read_text()
        m = re.search(r"Test accuracy .*?\*\*([0-9.]+)%\*\*", card)
        assert m and float(m.group(1)) == pytest.approx(100 * acc, abs=0.005)
        assert re.search(rf"\b{TINY.epochs} epochs\b", card) and "Confusion matrix" in card


def test_progress_is_reported_per_epoch(trained):
    _, lines, _ = trained
    for name in DEMOS:
        epochs = [ln for ln in lines if ln.startswith(f"{name}: epoch ")]
        assert [ln.split()[2] for ln in epochs] == [f"{e}/{TINY.epochs}" for e in range(1, TINY.epochs + 1)]
    assert any(ln.startswith("generated 48 train images") for ln in lines)


def test_the_same_seed_gives_the_same_weights(trained, tmp_path):
    out, _, _ = trained
    train_demos(tmp_path, only=["faces-vit"], recipe=TINY, log=lambda m: None)
    a = load_file(str(out / "faces-vit.safetensors"))
    b = load_file(str(tmp_path / "faces-vit.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    other = tmp_path / "seed1"
    train_demos(other, only=["faces-vit"], recipe=dataclasses.replace(TINY, seed=1), log=lambda m: None)
    c = load_file(str(other / "faces-vit.safetensors"))
    assert not all((a[k] == c[k]).all() for k in a)


def test_unknown_model_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown demo model"):
        train_demos(tmp_path, only=["faces-cnn"], recipe=TINY)


def test_shift_moves_each_image_by_whole_pixels_repeating_the_edges():
    """Without zoom, the augmentation is an exact shift by the drawn whole-pixel amount, edge pixels repeated
    where the image moved away from a border; the same generator state gives the same batch."""
    from attnviz.demo.train import shift_and_scale

    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16)
    recipe = Recipe(translate=3, scale=(1.0, 1.0))
    out = shift_and_scale(x, recipe, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    torch.rand(6, generator=g)  # the zoom draw comes first
    shift = torch.randint(-3, 4, (6, 2), generator=g)
    for i, (dx, dy) in enumerate(shift.tolist()):
        rows = (torch.arange(16) - dy).clamp(0, 15)  # output row r shows input row r - dy
        cols = (torch.arange(16) - dx).clamp(0, 15)
        assert torch.allclose(out[i], x[i][:, rows][:, :, cols], atol=1e-5), (i, dx, dy)
    assert torch.equal(out, shift_and_scale(x, recipe, torch.Generator().manual_seed(5)))
    assert shift_and_scale(x, Recipe(translate=0, scale=(1.0, 1.0)), torch.Generator()) is x


def test_zoom_enlarges_about_the_centre():
    from attnviz.demo.train import shift_and_scale

    x = torch.zeros(1, 1, 32, 32)
    x[..., 12:20, 12:20] = 1.0  # an 8-px square in the middle
    out = shift_and_scale(x, Recipe(translate=0, scale=(2.0, 2.0)), torch.Generator().manual_seed(0))
    assert float(out.sum()) == pytest.approx(4 * float(x.sum()), rel=0.05)  # twice as wide and high
    assert float(out[..., 16, 16]) == pytest.approx(1.0) and float(out[..., 2, 2]) == 0.0


def test_card_states_the_augmentation_and_the_position_rank_correlation(trained):
    out, _, results = trained
    card = (out / "faces-vit.md").read_text()
    rho = results["faces-vit"]["pos_rank_correlation"]
    m = re.search(r"rank correlation \(Spearman\).*?\*\*([-+][0-9.]+)\*\*", card, re.S)
    assert m and float(m.group(1)) == pytest.approx(rho, abs=5e-4)
    own = recipe_for("faces-vit", TINY)
    if own.translate > 0:
        assert f"±{own.translate:g} px" in card and f"±{own.translate:g} px" in (out / "faces-vit-nope.md").read_text()
    assert "shifts" not in (out / "faces-swin.md").read_text()  # the Swins keep the recipe they shipped with
    assert "rank correlation" not in (out / "faces-vit-nope.md").read_text()  # it has no embedding


def test_each_model_takes_its_own_recipe_where_the_caller_kept_the_default(monkeypatch):
    """A model's own recipe (MODEL_RECIPES) fills the fields a caller left at their defaults; fields a caller
    set (a seed, an epoch count) apply to every model. The ViT pair shares one recipe."""
    for seed in (0, 3):
        vit, nope, swin = (recipe_for(n, Recipe(seed=seed)) for n in ("faces-vit", "faces-vit-nope", "faces-swin"))
        assert vit == nope and vit.seed == seed
        assert swin == Recipe(seed=seed)
        assert vit == dataclasses.replace(Recipe(seed=seed), **MODEL_RECIPES.get("faces-vit", {}))
    import attnviz.demo.train as train

    own = {"n_train": 100, "epochs": 5, "translate": 4.0}
    monkeypatch.setattr(train, "MODEL_RECIPES", {"faces-vit": own, "faces-vit-nope": own})
    assert recipe_for("faces-vit", Recipe(seed=2)) == Recipe(n_train=100, epochs=5, translate=4.0, seed=2)
    assert recipe_for("faces-vit", Recipe(epochs=3)).epochs == 3  # set by the caller: kept
    assert recipe_for("faces-swin", Recipe(seed=2)) == Recipe(seed=2)
