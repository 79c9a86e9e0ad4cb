"""The shipped demo models: they load through the users' loader, reproduce their cards, and teach the lesson
(no position embeddings -> permutation-invariant prediction; learned ones -> layout matters)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from attnviz.analysis.pos_embed import distance_rank_correlation, spatial_structure, vit_position_similarity
from attnviz.analysis.scramble import apply_to_image, random_permutation
from attnviz.demo.faces import CLASS_NAMES, make_split
from attnviz.demo.train import DEMOS, to_input
from attnviz.model import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"
TEST_N = 3000  # the card's test split: 'test', seed 0


def _load(name):
    path = MODELS / f"{name}.safetensors"
    if not path.exists():
        pytest.fail(f"{path} is missing: run `attnviz train-demo`")
    return load_model(str(path), device="cpu")


def _card_accuracy(name) -> float:
    text = (MODELS / f"{name}.md").read_text()
    m = re.search(r"Test accuracy .*?\*\*([0-9.]+)%\*\*", text)
    assert m, f"{name}.md states no test accuracy"
    return float(m.group(1)) / 100


@pytest.fixture(scope="module")
def test_split():
    imgs, labels = make_split("test", TEST_N, seed=0)
    return to_input(imgs), torch.from_numpy(labels), imgs


def _predict(model, x):
    with torch.inference_mode():
        return torch.cat([model.net(x[i:i + 500]) for i in range(0, len(x), 500)])


@pytest.mark.parametrize("name", list(DEMOS))
def test_loads_with_sidecar_and_reproduces_card_accuracy(name, test_split):
    model = _load(name)
    assert model.info.class_names == CLASS_NAMES
    assert model.info.preprocess.input_size == (64, 64)
    assert type(model.info.config) is type(DEMOS[name])
    x, y, _ = test_split
    acc = float((_predict(model, x).argmax(-1) == y).float().mean())
    assert acc == pytest.approx(_card_accuracy(name), abs=1e-4)  # the same split, regenerated from its seed
    if name != "faces-vit-nope":
        assert acc >= 0.97  # the target for the models that can see layout


def test_shipped_files_are_small():
    total = sum(p.stat().st_size for p in MODELS.glob("*.safetensors"))
    assert 0 < total < 20 * 2**20
    assert all(p.stat().st_size < 5 * 2**20 for p in MODELS.glob("*.safetensors"))


def test_without_position_embeddings_face_vs_scrambled_is_chance_but_none_is_easy(test_split):
    """faces-vit-nope sees a bag of patches: between a face and the same parts in wrong places it is left at
    chance, while it finds the images without face parts as well as faces-vit does."""
    x, y, _ = test_split
    two = y < 2  # face and scrambled only, decided between their two logits
    result = {}
    for name in ("faces-vit", "faces-vit-nope"):
        logits = _predict(_load(name), x)
        result[name] = (float((logits[two][:, :2].argmax(-1) == y[two]).float().mean()),
                        float((logits[y == 2].argmax(-1) == 2).float().mean()))
    (vit_fs, vit_none), (nope_fs, nope_none) = result["faces-vit"], result["faces-vit-nope"]
    assert nope_none > 0.95 and vit_none > 0.95, result
    assert 0.45 <= nope_fs <= 0.55, result  # chance, within 4.5 standard errors over 2000 images
    assert vit_fs > 0.95, result


def test_nope_logits_are_invariant_to_patch_permutations(test_split):
    model = _load("faces-vit-nope")
    x = test_split[0][:16]
    for seed in range(3):
        perm = random_permutation((8, 8), seed=seed)
        xs = torch.stack([apply_to_image(img, perm, patch_size=8, layout="chw") for img in x])
        diff = (_predict(model, xs) - _predict(model, x)).abs().max().item()
        assert diff <= 1e-4, diff
        assert not torch.equal(xs, x)


def test_vit_with_position_embeddings_changes_its_mind_when_a_face_is_scrambled(test_split):
    model = _load("faces-vit")
    x, y, _ = test_split
    faces = x[y == 0][:40]
    before = _predict(model, faces).argmax(-1)
    assert (before == 0).float().mean() > 0.9
    perm = random_permutation((8, 8), seed=1)
    scrambled = torch.stack([apply_to_image(img, perm, patch_size=8, layout="chw") for img in faces])
    after_logits = _predict(model, scrambled)
    changed = float((after_logits.argmax(-1)[before == 0] != 0).float().mean())
    assert changed > 0.5, changed  # (the same check on faces-vit-nope changes nothing: logits are invariant)
    p_face_before = _predict(model, faces).softmax(-1)[:, 0].mean()
    p_face_after = after_logits.softmax(-1)[:, 0].mean()
    assert p_face_after < p_face_before - 0.3, (p_face_before, p_face_after)


def test_learned_position_embeddings_encode_2d_structure():
    model = _load("faces-vit")
    st = spatial_structure(vit_position_similarity(model.net))
    assert st.neighbour_mean > st.distant_mean + 0.1


def test_faces_vit_position_similarity_falls_with_distance_as_its_card_says():
    """The lesson of the Position embeddings panel, by the shipped model alone: the nearer two patches, the
    more alike their learned embeddings, as the card states."""
    rho = distance_rank_correlation(vit_position_similarity(_load("faces-vit").net))
    text = (MODELS / "faces-vit.md").read_text()
    m = re.search(r"rank correlation \(Spearman\).*?\*\*([-+][0-9.]+)\*\*", text, re.S)
    assert m, "faces-vit.md states no rank correlation"
    assert rho == pytest.approx(float(m.group(1)), abs=5e-4)
    # faces-vit is trained on faces shifted by up to ±16 px and zoomed by up to ×1.1 (the default recipe, no
    # shifts, gave -0.261: border patches alike, whatever their distance); a real DINOv2 ViT-S/14 gives -0.56.
    assert rho <= -0.5, rho
