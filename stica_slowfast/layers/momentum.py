"""Momentum (EMA) target encoders, shared by MoCo and BYOL.

MoCo (arXiv 1911.05722) and BYOL (arXiv 2006.07733) compute their keys / targets with a copy of the
online encoder whose weights follow an exponential moving average of the online weights; rho-clip
MoCo and BYOL in Feichtenhofer et al. (arXiv 2104.14558) do the same, with BYOL's cosine momentum
schedule.
"""

import copy
import math

import torch
import torch.nn as nn

from stica_slowfast.utils.misc import unwrap

__all__ = ["momentum_update", "cosine_momentum", "make_target"]


def make_target(online: nn.Module) -> nn.Module:
    """Deep-copy ``online`` into a target encoder that the optimiser skips.

    Args:
        online: the online encoder, possibly DDP-wrapped (the copy is of the unwrapped module: the
            target is never all-reduced, it follows the already-synchronised online weights).

    Returns:
        The copy, with ``requires_grad=False`` on every parameter.
    """
    target = copy.deepcopy(unwrap(online))
    target.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """EMA step in place: ``target = momentum * target + (1 - momentum) * online``.

    Buffers (BatchNorm running statistics, ``num_batches_tracked``) are copied, not averaged: they are
    running estimates already, so averaging them again would only make them lag further behind the
    weights they describe.

    Args:
        online: online encoder, possibly DDP-wrapped.
        target: target encoder with the same structure, possibly DDP-wrapped.
        momentum: in [0, 1]; 1 leaves the target unchanged, 0 copies the online weights.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
    online, target = unwrap(online), unwrap(target)
    online_params = dict(online.named_parameters())
    target_params = dict(target.named_parameters())
    if online_params.keys() != target_params.keys():
        raise ValueError("online and target encoders have different parameters")
    for name, t in target_params.items():
        # lerp is exact at both ends (weight 0 keeps t, weight 1 gives the online value), which the
        # momentum=1 / momentum=0 contracts rely on.
        t.lerp_(online_params[name].detach().to(t.dtype), 1.0 - momentum)
    online_buffers = dict(online.named_buffers())
    for name, b in target.named_buffers():
        b.copy_(online_buffers[name])


def cosine_momentum(base: float, step: int, max_steps: int) -> float:
    """BYOL's momentum schedule, rising from ``base`` at step 0 to 1 at ``max_steps``.

    ``1 - (1 - base) * (cos(pi * step / max_steps) + 1) / 2``; steps outside ``[0, max_steps]`` are
    clamped.

    Args:
        base: momentum at step 0, in [0, 1] (0.996 in BYOL).
        step: current optimisation step.
        max_steps: total number of steps, > 0.

    Returns:
        The momentum for this step.
    """
    if max_steps <= 0:
        raise ValueError(f"max_steps must be > 0, got {max_steps}")
    progress = min(max(step, 0), max_steps) / max_steps
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0

