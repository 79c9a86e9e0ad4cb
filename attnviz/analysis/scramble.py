"""Patch scrambling: what a ViT does when the patches of an image are moved around.

Without position embeddings a ViT is permutation-equivariant over its patch tokens: moving the
patches moves the attention with them and leaves the class prediction unchanged. Position embeddings
break that symmetry; scrambling an image, with embeddings on and off, shows how much a model relies
on where things are. "Off" is an argument of the capture (``net.capture(x, use_pos_embed=False)``),
never a switch left on the network.

Convention: a permutation ``perm`` of the N = gh * gw patches (row-major) says that position i of the
scrambled image shows original patch ``perm[i]``: ``scrambled[i] = original[perm[i]]``. As a matrix
P[i, perm[i]] = 1, so tokens go to P x and attention over patches to P A Pᵀ. Prefix tokens (class,
distillation, registers) never move.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import numpy as np
import torch

from attnviz.nets import AttnNet
from attnviz.nets.vit import VisionTransformer

Array = Union[torch.Tensor, np.ndarray]


# --------------------------------------------------------------------------------------------------
# Permutations
# --------------------------------------------------------------------------------------------------


def _n(grid_size: tuple[int, int]) -> int:
    gh, gw = int(grid_size[0]), int(grid_size[1])
    if gh <= 0 or gw <= 0:
        raise ValueError(f"grid size must be positive, got {grid_size}")
    return gh * gw


def check_permutation(perm: Union[Sequence[int], Array], n: Optional[int] = None) -> torch.Tensor:
    """Validate a permutation of 0 .. n-1 (custom input) and return it as a LongTensor."""
    try:
        p = torch.as_tensor(np.asarray(perm) if not isinstance(perm, torch.Tensor) else perm)
    except Exception as exc:  # noqa: BLE001 - any unconvertible input gets one message
        raise ValueError(f"not a permutation: {exc}") from exc
    if p.dim() != 1 or p.dtype.is_floating_point or p.dtype == torch.bool or p.is_complex():
        raise ValueError("a permutation must be a 1-D sequence of integers")
    p = p.long()
    if n is not None and p.numel() != n:
        raise ValueError(f"permutation has {p.numel()} entries, the grid has {n} patches")
    if p.numel() and not torch.equal(torch.sort(p).values, torch.arange(p.numel())):
        raise ValueError("not a permutation: every index 0 .. N-1 must appear exactly once")
    return p


def identity_permutation(grid_size: tuple[int, int]) -> torch.Tensor:
    return torch.arange(_n(grid_size))


def random_permutation(grid_size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """A uniformly random permutation of the grid's patches, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(_n(grid_size), generator=g)


def window_permutation(grid_size: tuple[int, int], window_size: int, seed: int = 0) -> torch.Tensor:
    """Shuffle patches only within M x M blocks of the grid (row-major blocks from the top-left;
    blocks at the right/bottom edge may be smaller). Content stays local, order inside blocks is lost."""
    gh, gw = int(grid_size[0]), int(grid_size[1])
    n = _n(grid_size)
    M = int(window_size)
    if M <= 0:
        raise ValueError(f"window size must be positive, got {window_size}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.arange(n)
    idx = torch.arange(n).reshape(gh, gw)  # (gh, gw)
    for y0 in range(0, gh, M):
        for x0 in range(0, gw, M):
            cells = idx[y0 : y0 + M, x0 : x0 + M].reshape(-1)  # (<= M*M,)
            perm[cells] = cells[torch.randperm(cells.numel(), generator=g)]
    return perm


def swap_permutation(grid_size: tuple[int, int], a: tuple[int, int], b: tuple[int, int]) -> torch.Tensor:
    """Exchange the patches at grid positions a = (y, x) and b."""
    gh, gw = int(grid_size[0]), int(grid_size[1])
    perm = torch.arange(_n(grid_size))
    for (y, x) in (a, b):
        if not (0 <= y < gh and 0 <= x < gw):
            raise ValueError(f"patch ({y}, {x}) is outside the {gh}x{gw} grid")
    ia, ib = a[0] * gw + a[1], b[0] * gw + b[1]
    perm[ia], perm[ib] = ib, ia
    return perm


def reverse_permutation(grid_size: tuple[int, int]) -> torch.Tensor:
    """Reverse the row-major patch order (the patch grid turned by 180 degrees, patches upright)."""
    return torch.arange(_n(grid_size) - 1, -1, -1)


def inverse_permutation(perm: Union[Sequence[int], Array]) -> torch.Tensor:
    """``inv`` with inv[perm[i]] = i, so applying perm then inv restores the original order."""
    p = check_permutation(perm)
    inv = torch.empty_like(p)
    inv[p] = torch.arange(p.numel())
    return inv


def compose(first: Union[Sequence[int], Array], then: Union[Sequence[int], Array]) -> torch.Tensor:
    """One permutation equal to applying ``first`` and then ``then``: result[i] = first[then[i]]."""
    p, q = check_permutation(first), check_permutation(then)
    if p.numel() != q.numel():
        raise ValueError(f"cannot compose permutations of {p.numel()} and {q.numel()} patches")
    return p[q]


def permutation_matrix(perm: Union[Sequence[int], Array]) -> torch.Tensor:
    """(N, N) matrix P with P[i, perm[i]] = 1, so that P @ x scrambles token rows x."""
    p = check_permutation(perm)
    P = torch.zeros(p.numel(), p.numel())
    P[torch.arange(p.numel()), p] = 1.0
    return P


# --------------------------------------------------------------------------------------------------
# Applying a permutation
# --------------------------------------------------------------------------------------------------


def _layout(shape: tuple[int, ...], layout: Optional[str]) -> str:
    if layout is not None:
        if layout not in ("hwc", "chw"):
            raise ValueError(f"layout must be 'hwc' or 'chw', got {layout!r}")
        return layout
    if len(shape) == 4:
        return "chw"  # (B, C, H, W) network input
    if len(shape) == 2:
        return "hw"
    if len(shape) != 3:
        raise ValueError(f"expected an image (H, W, C), (C, H, W) or (B, C, H, W), got shape {shape}")
    first, last = shape[0] in (1, 3, 4), shape[-1] in (1, 3, 4)
    if first and not last:
        return "chw"
    if last and not first:
        return "hwc"
    raise ValueError(f"cannot tell channels from image shape {shape}; pass layout='hwc' or 'chw'")


def apply_to_image(img: Array, perm: Union[Sequence[int], Array], patch_size: int, layout: Optional[str] = None) -> Array:
    """Move the patch_size x patch_size patches of ``img`` by ``perm`` (same type as the input).

    ``img`` is (H, W, C), (C, H, W), (H, W) or a batch (B, C, H, W), a tensor or an array; the layout of
    a 3-D image is guessed from where the 1/3/4 channels are unless ``layout`` says. The grid is
    (H // p, W // p); pixels right/below the last whole patch stay where they are.
    """
    is_np = isinstance(img, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(img)) if is_np else img
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"image must be a tensor or numpy array, got {type(img).__name__}")
    kind = _layout(tuple(t.shape), layout)
    p = int(patch_size)
    if p <= 0:
        raise ValueError(f"patch size must be positive, got {patch_size}")
    # Bring to (B, C, H, W).
    if kind == "hw":
        x = t[None, None]
    elif kind == "hwc":
        x = t.permute(2, 0, 1)[None]
    else:
        x = t if t.dim() == 4 else t[None]
    B, C, H, W = x.shape
    gh, gw = H // p, W // p
    if gh == 0 or gw == 0:
        raise ValueError(f"a {H}x{W} image holds no whole {p}x{p} patch")
    q = check_permutation(perm, gh * gw)
    out = x.clone()
    core = x[:, :, : gh * p, : gw * p].reshape(B, C, gh, p, gw, p)  # (B, C, gh, p, gw, p)
    patches = core.permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C, p, p)  # (B, N, C, p, p)
    patches = patches[:, q.to(patches.device)]  # scrambled[i] = original[perm[i]]
    core = patches.reshape(B, gh, gw, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, C, gh * p, gw * p)
    out[:, :, : gh * p, : gw * p] = core
    # Back to the input layout.
    if kind == "hw":
        res = out[0, 0]
    elif kind == "hwc":
        res = out[0].permute(1, 2, 0)
    else:
        res = out if t.dim() == 4 else out[0]
    return res.contiguous().numpy() if is_np else res.contiguous()


def _full_index(perm: torch.Tensor, num_prefix: int) -> torch.Tensor:
    return torch.cat([torch.arange(num_prefix), num_prefix + perm])


def apply_to_tokens(tokens: Array, perm: Union[Sequence[int], Array], num_prefix: int = 0, dim: int = -2) -> Array:
    """Scramble a token sequence: prefix tokens stay, patch token i becomes patch token perm[i].

    ``tokens`` has the token axis at ``dim`` (default -2, i.e. (B, N, D) or (N, D)).
    """
    is_np = isinstance(tokens, np.ndarray)
    t = torch.from_numpy(tokens) if is_np else tokens
    n_patch = t.shape[dim] - num_prefix
    q = check_permutation(perm, n_patch)
    out = t.index_select(dim, _full_index(q, num_prefix).to(t.device))
    return out.numpy() if is_np else out


def unpermute_attention(attn: Array, perm: Union[Sequence[int], Array], num_prefix: int = 0) -> Array:
    """Attention of a scrambled input, put back in the original patch frame: Pᵀ A P on patches.

    ``attn`` is (..., T, T) over prefix + patch tokens of the scrambled input; entry [perm[i], perm[j]]
    of the result is entry [i, j] of the input. Prefix rows/columns stay in place.
    """
    is_np = isinstance(attn, np.ndarray)
    a = torch.from_numpy(attn) if is_np else attn
    if a.dim() < 2 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention must be (..., T, T), got shape {tuple(a.shape)}")
    inv = inverse_permutation(check_permutation(perm, a.shape[-1] - num_prefix))
    idx = _full_index(inv, num_prefix).to(a.device)
    out = a.index_select(-2, idx).index_select(-1, idx)
    return out.numpy() if is_np else out


def permute_attention(attn: Array, perm: Union[Sequence[int], Array], num_prefix: int = 0) -> Array:
    """P A Pᵀ on patches: what attention over the original tokens becomes when the input is scrambled."""
    is_np = isinstance(attn, np.ndarray)
    a = torch.from_numpy(attn) if is_np else attn
    q = check_permutation(perm, a.shape[-1] - num_prefix)
    idx = _full_index(q, num_prefix).to(a.device)
    out = a.index_select(-2, idx).index_select(-1, idx)
    return out.numpy() if is_np else out


# --------------------------------------------------------------------------------------------------
# The equivariance check (position embeddings on or off per capture)
# --------------------------------------------------------------------------------------------------


@dataclass
class EquivarianceReport:
    """How far a ViT is from permutation equivariance on one input and one permutation.

    Compares the capture of the scrambled input P x with the capture of x: logits (equal for an
    equivariant net, since class-token and average pooling are order-free) and, per block, the
    scrambled attention taken back to the original frame, Pᵀ A(Px) P, against A(x).
    """

    pos_embed_used: bool
    logits_max_abs_diff: Optional[float]  # None when the net has no classifier
    attn_max_abs_diff: list[float] = field(default_factory=list)  # per block, forward order

    @property
    def max_attn_diff(self) -> float:
        return max(self.attn_max_abs_diff) if self.attn_max_abs_diff else 0.0

    def is_equivariant(self, atol: float = 1e-5) -> bool:
        logits_ok = self.logits_max_abs_diff is None or self.logits_max_abs_diff <= atol
        return logits_ok and self.max_attn_diff <= atol


def equivariance_check(
    net: AttnNet,
    x: torch.Tensor,
    perm: Union[Sequence[int], Array],
    *,
    use_pos_embed: bool = True,
) -> EquivarianceReport:
    """Compare ``net.capture`` of x and of its patch-scrambled version (ViT family only).

    ``use_pos_embed`` is passed to both captures: with the position embedding left out the
    differences are at float precision; with it in they usually are not.
    """
    if not isinstance(net, VisionTransformer):
        raise ValueError("the equivariance check needs a ViT-family network (Swin's windows are not permutation-free)")
    if x.dim() != 4:
        raise ValueError(f"input must be a (B, 3, H, W) batch, got shape {tuple(x.shape)}")
    used = bool(use_pos_embed) and net.pos_embed is not None
    with torch.no_grad():
        ref = net.capture(x, use_pos_embed=use_pos_embed)
        q = check_permutation(perm, ref.grid_size[0] * ref.grid_size[1])
        scr = net.capture(apply_to_image(x, q, ref.patch_size, layout="chw"), use_pos_embed=use_pos_embed)
    return compare_captures(ref, scr, q, used)


def compare_captures(ref, scr, perm: Union[Sequence[int], Array], pos_embed_used: bool) -> EquivarianceReport:
    """The equivariance numbers of two ViT captures already made: ``ref`` of x and ``scr`` of the
    patch-scrambled input (by ``perm``), both with the same position-embedding setting.

    Per block, max |Pᵀ A(Px) P − A(x)| over the batch, heads and every token pair (prefix included);
    the logits' max |difference| over classes.
    """
    if ref.family != "vit" or scr.family != "vit":
        raise ValueError("the equivariance check needs ViT-family captures (Swin's windows are not permutation-free)")
    P = ref.num_prefix_tokens
    q = check_permutation(perm, ref.grid_size[0] * ref.grid_size[1])
    logits_diff = None
    if ref.logits is not None and scr.logits is not None:
        logits_diff = float((scr.logits.float() - ref.logits.float()).abs().max())
    diffs = [
        float((unpermute_attention(b_s.attn.float().cpu(), q, P) - b_r.attn.float().cpu()).abs().max())
        for b_r, b_s in zip(ref.blocks, scr.blocks)
    ]
    return EquivarianceReport(bool(pos_embed_used), logits_diff, diffs)


def probability_change(ref_logits: Array, scr_logits: Array) -> float:
    """Largest change of any class probability (softmax of the logits), in [0, 1]: how much the
    prediction moved when the input was scrambled."""
    a = torch.as_tensor(ref_logits).double().reshape(-1).softmax(-1)
    b = torch.as_tensor(scr_logits).double().reshape(-1).softmax(-1)
    if a.shape != b.shape:
        raise ValueError(f"logits of {a.numel()} and {b.numel()} classes cannot be compared")
    return float((b - a).abs().max())


__all__ = [
    "check_permutation",
    "identity_permutation",
    "random_permutation",
    "window_permutation",
    "swap_permutation",
    "reverse_permutation",
    "inverse_permutation",
    "compose",
    "permutation_matrix",
    "apply_to_image",
    "apply_to_tokens",
    "unpermute_attention",
    "permute_attention",
    "EquivarianceReport",
    "equivariance_check",
    "compare_captures",
    "probability_change",
]
