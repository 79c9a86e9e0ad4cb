"""Small data files shipped inside the package (read with importlib.resources, so they work from a wheel)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources


@lru_cache(maxsize=1)
def _imagenet_names() -> tuple[str, ...]:
    text = resources.files(__name__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in classifier-index order.

    Each line is the WordNet lemma list of the class's synset ("tench, Tinca tinca"), the same text
    timm's ``ImageNetInfo().label_descriptions()`` gives, so labels read the same as in timm.
    """
    return list(_imagenet_names())
