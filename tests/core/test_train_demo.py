"""`attnviz train-demo` on a tiny recipe: it reports progress, writes what the loader reads with a card
that describes the saved weights, and gives the same weights for the same seed in one process."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from safetensors.torch import load_file

from attnviz.demo.faces import CLASS_NAMES, make_split
from attnviz.demo.train import DEMOS, Recipe, to_input, train_demos
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
