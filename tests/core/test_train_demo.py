"""`attnviz train-demo` on a tiny recipe: it reports progress, writes what the loader reads, and is
deterministic by seed (the shipped models are its output on the full recipe)."""
from __future__ import annotations

import re

import pytest
from safetensors.torch import load_file

from attnviz.demo.faces import CLASS_NAMES
from attnviz.demo.train import DEMOS, Recipe, train_demos
from attnviz.model import load_model

TINY = Recipe(n_train=48, n_val=12, n_test=24, epochs=2, batch_size=16)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    lines: list[str] = []
    results = train_demos(out, recipe=TINY, log=lines.append)
    return out, lines, results


def test_every_demo_is_written_in_the_users_format(trained):
    out, _, results = trained
    assert set(results) == set(DEMOS)
    for name in DEMOS:
        model = load_model(str(out / f"{name}.safetensors"), device="cpu")
        assert model.info.class_names == CLASS_NAMES
        assert type(model.info.config) is type(DEMOS[name])
        card = (out / f"{name}.md").read_text()
        m = re.search(r"Test accuracy .*?\*\*([0-9.]+)%\*\*", card)
        assert m and float(m.group(1)) == pytest.approx(100 * results[name]["test_acc"], abs=0.005)
        assert f"{TINY.epochs} epochs" in card and "Confusion matrix" in card


def test_progress_is_reported_per_epoch(trained):
    _, lines, _ = trained
    for name in DEMOS:
        epochs = [ln for ln in lines if ln.startswith(f"{name}: epoch ")]
        assert [ln.split()[2] for ln in epochs] == [f"{e}/{TINY.epochs}" for e in range(1, TINY.epochs + 1)]
    assert any(ln.startswith("generated 48 train images") for ln in lines)


def test_training_is_deterministic_by_seed(trained, tmp_path):
    out, _, _ = trained
    train_demos(tmp_path, only=["faces-vit"], recipe=TINY, log=lambda m: None)
    a = load_file(str(out / "faces-vit.safetensors"))
    b = load_file(str(tmp_path / "faces-vit.safetensors"))
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)


def test_unknown_model_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown demo model"):
        train_demos(tmp_path, only=["faces-cnn"], recipe=TINY)
