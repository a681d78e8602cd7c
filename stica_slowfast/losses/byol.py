"""BYOL regression loss.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", arXiv 2006.07733;
used for rho clips per video in Feichtenhofer et al., arXiv 2104.14558 (symmetrised over ordered pairs
of clips by the caller).
"""

import torch
import torch.nn.functional as F

__all__ = ["byol_loss"]


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of ``2 - 2 cos(p_i, z_i)``, the squared distance of the L2-normalised vectors.

    ``|p/|p| - z/|z||^2 = 2 - 2 cos(p, z)``. The target (the momentum encoder's projection) is detached, so
    only ``prediction`` receives gradients.

    Args:
        prediction: ``(N, D)`` online predictor outputs.
        target: ``(N, D)`` target projections (detached inside).

    Returns:
        Scalar tensor in ``[0, 4]``: the mean over the ``N`` rows.
    """
    if prediction.dim() != 2 or target.shape != prediction.shape:
        raise ValueError(
            f"prediction and target must both be (N, D); got {tuple(prediction.shape)}, {tuple(target.shape)}"
        )
    p = F.normalize(prediction, dim=1)
    z = F.normalize(target.detach(), dim=1)
    return (2 - 2 * (p * z).sum(dim=1)).mean()
