"""STiCA's within-video crop objective (Patrick et al., "Space-Time Crop & Attend", arXiv 2103.10211).

Crops of one video's views are positives of each other, crops of other videos negatives. Symbols:
N_l / N_s large / small crops per view, V views, B videos, E embedding size::

    large (N_l, V, B, E), small (N_s, V, B, E)   -> L2-normalised
    large <-> large: every ordered pair of large crops (i, a), (j, b) of different views a != b
    small  -> large: every small crop (k, a) against every large crop (i, b) of another view b != a,
                     large side stopped
    each pair (q, k): InfoNCE over the B videos, -1/B sum_n log softmax_m(q_n . k_m / T)[n]
    loss = mean(large-large terms) + mean(small-large terms), halved when both exist

A positive pair is always two views: crops of one view are cut from one feature map, so they share
its clip's moment and augmentation (colour jitter, flip, blur), and matching them would reward
encoding exactly what the augmentation is there to remove (e.g. the colours a video shows at that
moment). All pairs are computed in one batched product, not a Python loop over pairs.
"""

from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["pairwise_info_nce", "crop_info_nce"]


def pairwise_info_nce(
    queries: torch.Tensor, keys: torch.Tensor, *, temperature: float, pair_mask: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Mean InfoNCE over all (query set, key set) pairs, batched.

    For query set p and key set q, row n of ``queries[p]`` has the positive ``keys[q, n]`` and the
    negatives ``keys[q, m]``, ``m != n`` (as :func:`~.info_nce.info_nce` without extra negatives).

    Args:
        queries: ``(P, B, E)``: P sets of B embeddings.
        keys: ``(Q, B, E)``.
        temperature: T > 0.
        pair_mask: ``(P, Q)`` bool, the pairs to average (all when None).

    Returns:
        Scalar: the mean over the selected pairs of each pair's mean cross-entropy.
    """
    if queries.dim() != 3 or keys.dim() != 3 or queries.shape[1:] != keys.shape[1:]:
        raise ValueError(f"queries and keys must be (P, B, E) and (Q, B, E), got {tuple(queries.shape)} "
                         f"and {tuple(keys.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    q, k = F.normalize(queries, dim=-1), F.normalize(keys, dim=-1)
    logits = torch.einsum("pne,qme->pqnm", q, k) / temperature  # (P, Q, B, B)
    # -log softmax over the keys m, at the positive m = n: (P, Q, B) -> mean over B -> (P, Q)
    per_pair = -logits.log_softmax(dim=-1).diagonal(dim1=-2, dim2=-1).mean(dim=-1)
    if pair_mask is None:
        return per_pair.mean()
    if pair_mask.shape != per_pair.shape or not pair_mask.any():
        raise ValueError(f"pair_mask must be a non-empty ({per_pair.shape[0]}, {per_pair.shape[1]}) "
                         f"selection, got {tuple(pair_mask.shape)} with {int(pair_mask.sum())} pairs")
    return per_pair[pair_mask].mean()


def crop_info_nce(
    large: torch.Tensor, small: Optional[torch.Tensor] = None, *, temperature: float
) -> torch.Tensor:
    """The crop loss of the module docstring.

    Args:
        large: ``(N_l, V, B, E)`` large-crop embeddings, V >= 2 views.
        small: ``(N_s, V, B, E)`` small-crop embeddings, or None.
        temperature: T > 0 (the paper's 0.5).

    Returns:
        Scalar loss.
    """
    if large.dim() != 4 or large.shape[1] < 2:
        raise ValueError(f"large must be (N_l, V, B, E) with V >= 2 views, got {tuple(large.shape)}")
    n_l, views = large.shape[:2]
    flat = large.flatten(0, 1)  # (N_l * V, B, E), view index = row % V
    view = torch.arange(n_l * views, device=large.device) % views
    loss = pairwise_info_nce(flat, flat, temperature=temperature, pair_mask=view[:, None] != view[None, :])
    if small is None or small.shape[0] == 0:
        return loss
    if small.dim() != 4 or small.shape[1:] != large.shape[1:]:
        raise ValueError(f"small must be (N_s, {views}, B, E) like large, got {tuple(small.shape)}")
    small_view = torch.arange(small.shape[0] * views, device=small.device) % views
    small_to_large = pairwise_info_nce(small.flatten(0, 1), flat.detach(), temperature=temperature,
                                       pair_mask=small_view[:, None] != view[None, :])
    return 0.5 * (loss + small_to_large)
