"""InfoNCE-style contrastive losses (SimCLR and MoCo).

* InfoNCE with in-batch negatives and an optional memory queue: MoCo, He et al., "Momentum Contrast for
  Unsupervised Visual Representation Learning", arXiv 1911.05722; and the rho-clip video setting of
  Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal Representation Learning",
  arXiv 2104.14558.
* NT-Xent over several views: SimCLR, Chen et al., "A Simple Framework for Contrastive Learning of Visual
  Representations", arXiv 2002.05709, generalised to rho views (clips) per video.

Both are pure functions on embeddings; the caller builds the pairs of clips.
"""

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "nt_xent"]


def info_nce(
    query: torch.Tensor,
    keys: torch.Tensor,
    *,
    temperature: float,
    negatives: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """InfoNCE loss with in-batch negatives and optional extra negatives (a MoCo queue).

    All inputs are L2-normalised along the last dimension. For query ``q_i`` the positive is ``k_i``; the
    negatives are the other keys ``k_j`` (``j != i``) and every row ``n_m`` of ``negatives``::

        s_ij = q_i . k_j / T,   t_im = q_i . n_m / T
        loss = 1/N sum_i -log( exp(s_ii) / (sum_j exp(s_ij) + sum_m exp(t_im)) )

    Gradients flow into ``query``, ``keys`` and ``negatives`` alike; detach the keys (MoCo's momentum
    encoder) or the queue before calling when they should not receive gradients.

    Args:
        query: ``(N, D)`` query embeddings.
        keys: ``(N, D)`` key embeddings; row ``i`` is the positive of query row ``i``.
        temperature: softmax temperature ``T > 0``.
        negatives: optional ``(M, D)`` extra negatives shared by all queries.

    Returns:
        Scalar tensor: the mean cross-entropy over the ``N`` queries.
    """
    if query.dim() != 2 or keys.shape != query.shape:
        raise ValueError(f"query and keys must both be (N, D); got {tuple(query.shape)}, {tuple(keys.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    q = F.normalize(query, dim=1)
    k = F.normalize(keys, dim=1)
    logits = q @ k.t()
    if negatives is not None:
        if negatives.dim() != 2 or negatives.shape[1] != query.shape[1]:
            raise ValueError(f"negatives must be (M, {query.shape[1]}); got {tuple(negatives.shape)}")
        logits = torch.cat([logits, q @ F.normalize(negatives, dim=1).t()], dim=1)
    labels = torch.arange(query.shape[0], device=query.device)
    return F.cross_entropy(logits / temperature, labels)


def nt_xent(
    z: Union[torch.Tensor, Sequence[torch.Tensor]],
    temperature: float,
    *,
    num_views: Optional[int] = None,
) -> torch.Tensor:
    """SimCLR's NT-Xent loss generalised to ``rho`` views (clips) of each of ``B`` videos.

    The embeddings are L2-normalised and stacked view-major, so row ``a = v * B + b`` is view ``v`` of
    video ``b``. With ``s_ac = z_a . z_c / T`` and ``P(a)`` the ``rho - 1`` other views of the same video::

        loss = 1 / (rho * B) * sum_a 1 / (rho - 1) * sum_{p in P(a)}
                   -log( exp(s_ap) / sum_{c != a} exp(s_ac) )

    i.e. every clip is an anchor, each of its ``rho - 1`` positives gives one cross-entropy term whose
    denominator runs over all ``rho * B - 1`` other clips (its own similarity is excluded), and all
    ``rho (rho - 1) B`` ordered (anchor, positive) pairs are averaged. For ``rho = 2`` this is exactly the
    standard NT-Xent of SimCLR (mean over the ``2B`` anchors).

    Args:
        z: either a list of ``rho`` tensors of shape ``(B, D)`` or one ``(rho * B, D)`` tensor stacked
            view-major (then ``num_views`` is required).
        temperature: softmax temperature ``T > 0``.
        num_views: ``rho`` when ``z`` is a single stacked tensor; checked against the list length otherwise.

    Returns:
        Scalar tensor: the loss above.
    """
    if isinstance(z, torch.Tensor):
        if num_views is None:
            raise ValueError("num_views is required when z is a single (rho * B, D) tensor")
        rho = num_views
        stacked = z
    else:
        rho = len(z)
        if num_views is not None and num_views != rho:
            raise ValueError(f"num_views={num_views} but {rho} views were given")
        stacked = torch.cat(list(z), dim=0)
    if rho < 2:
        raise ValueError(f"nt_xent needs at least 2 views, got {rho}")
    if stacked.dim() != 2 or stacked.shape[0] % rho != 0:
        raise ValueError(f"z must be (rho * B, D) with rho={rho}; got {tuple(stacked.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    total = stacked.shape[0]
    batch = total // rho
    zn = F.normalize(stacked, dim=1)
    sim = (zn @ zn.t()) / temperature
    self_mask = torch.eye(total, dtype=torch.bool, device=sim.device)
    log_prob = torch.log_softmax(sim.masked_fill(self_mask, float("-inf")), dim=1)
    video = torch.arange(total, device=sim.device) % batch
    pos_mask = (video[:, None] == video[None, :]) & ~self_mask
    # Each row has exactly rho - 1 positives; select them without touching the -inf diagonal.
    pos_log_prob = log_prob.masked_select(pos_mask)
    return -pos_log_prob.sum() / (total * (rho - 1))
