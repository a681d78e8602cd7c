"""LARS: layer-wise adaptive rate scaling (You, Gitman and Ginsburg 2017, arXiv:1708.03888).

SGD with momentum in which every parameter tensor ("layer") not excluded from adaptation gets its own
learning rate, proportional to the ratio of its weight norm to its gradient norm. Per parameter ``w``
with gradient ``g``, group LR ``lr``, weight decay ``wd``, trust coefficient ``eta`` and momentum ``m``::

    d      = g + wd * w                                     # weight decay, as in torch.optim.SGD
    trust  = eta * ||w|| / (||g|| + wd * ||w||)             # adapted groups only; 1 if ||w|| or ||g|| is 0
    d      = trust * d                                      # excluded groups: trust = 1 (plain SGD)
    buf    = m * buf + d                                    # no dampening
    d      = d + m * buf  if nesterov else  buf
    w      = w - lr * d

Exclusion and weight decay
--------------------------
A param group with ``"lars_exclude": True`` (the ``"decay_1d"``, ``"norm"`` and ``"no_decay"`` groups of
:func:`stica_slowfast.engine.optim.build_param_groups`: biases and norm parameters, as SimCLR/BYOL do)
skips the trust ratio and is updated by plain momentum SGD. LARS never changes any group's weight decay
itself: each group's ``"weight_decay"`` already says whether it decays (``BN.WEIGHT_DECAY`` for norm
parameters, 0 for ``SOLVER.ZERO_WD_1D_PARAM``), and that value is used as given, both in ``d`` and in the
trust ratio's denominator.
"""

from typing import Any, Callable, Dict, Iterable, Optional, Union

import torch

__all__ = ["LARS"]


class LARS(torch.optim.Optimizer):
    """Momentum SGD with a per-tensor trust ratio on groups not flagged ``lars_exclude``.

    Args:
        params: Parameters or param-group dicts; a group may carry ``"lars_exclude"`` (default False)
            and override any of the hyper-parameters below.
        lr: Global learning rate (the schedule's value; the trust ratio multiplies it).
        momentum: Momentum factor (>= 0; 0 disables the momentum buffer).
        weight_decay: L2 weight decay added to the gradient (>= 0).
        eta: Trust coefficient (> 0); 0.001 in You et al.
        nesterov: Use Nesterov momentum (needs ``momentum`` > 0).
    """

    def __init__(
        self,
        params: Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
        nesterov: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"LARS lr must be >= 0, got {lr}")
        if momentum < 0:
            raise ValueError(f"LARS momentum must be >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"LARS weight_decay must be >= 0, got {weight_decay}")
        if eta <= 0:
            raise ValueError(f"LARS eta (trust coefficient) must be > 0, got {eta}")
        if nesterov and momentum <= 0:
            raise ValueError("LARS nesterov=True needs momentum > 0")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            eta=eta,
            nesterov=nesterov,
            lars_exclude=False,
        )
        super().__init__(params, defaults)

    @staticmethod
    def trust_ratio(param: torch.Tensor, grad: torch.Tensor, eta: float, weight_decay: float) -> torch.Tensor:
        """``eta * ||w|| / (||g|| + wd * ||w||)``, or 1 when ``||w||`` or ``||g||`` is 0 (0-dim tensor)."""
        w_norm = torch.linalg.vector_norm(param)
        g_norm = torch.linalg.vector_norm(grad)
        ratio = eta * w_norm / (g_norm + weight_decay * w_norm)
        # torch.where keeps this on the parameter's device without a host sync; the 0/0 of the
        # unused branch is discarded.
        return torch.where((w_norm > 0) & (g_norm > 0), ratio, torch.ones_like(ratio))

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], torch.Tensor]] = None) -> Optional[torch.Tensor]:
        """One update of every parameter that has a gradient.

        Args:
            closure: Optional callable that re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, wd = group["lr"], group["momentum"], group["weight_decay"]
            adapt = not group.get("lars_exclude", False)
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad = param.grad
                update = grad.add(param, alpha=wd) if wd != 0 else grad.clone()
                if adapt:
                    update.mul_(self.trust_ratio(param, grad, group["eta"], wd))
                if momentum != 0:
                    state = self.state[param]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = update.clone()
                    else:
                        buf.mul_(momentum).add_(update)
                    update = update.add(buf, alpha=momentum) if group["nesterov"] else buf
                param.add_(update, alpha=-lr)
        return loss
