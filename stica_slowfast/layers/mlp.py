"""Multi-layer perceptrons shared by the SSL methods: projectors and predictors.

SimCLR / MoCo v2 / BYOL / SwAV / SimSiam all put a small MLP on top of the pooled backbone features
(Feichtenhofer et al., "A Large-Scale Study on Unsupervised Spatiotemporal Representation Learning",
arXiv 2104.14558, use the same 3-layer projector and 2-layer predictor across methods). They differ only
in depth, widths and where the normalisation goes, so one cfg-free :class:`MLP` covers them all.
"""

from typing import Callable, Optional

import torch
import torch.nn as nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """``num_layers`` linear layers with norm + activation between them.

    Symbols: B batch, D_in / D_hid / D_out feature sizes. For ``num_layers=3``::

        x (B, D_in)
          -> Linear(D_in, D_hid)  -> norm -> act      (B, D_hid)
          -> Linear(D_hid, D_hid) -> norm -> act      (B, D_hid)
          -> Linear(D_hid, D_out) [-> norm, no affine] (B, D_out)

    ``num_layers=1`` is a single ``Linear(D_in, D_out)`` (``hidden_dim`` is then unused). Nothing follows
    the last linear layer unless ``last_norm`` is set.

    Args:
        in_dim: input feature size D_in.
        hidden_dim: width D_hid of the hidden layers.
        out_dim: output feature size D_out.
        num_layers: number of linear layers, >= 1.
        norm: ``norm(num_features) -> nn.Module`` put after every hidden linear layer, or None for
            none. Linear layers followed by a norm have no bias (the norm's mean subtraction would
            cancel it, leaving a parameter that never learns). No default: the config owns it
            (``CONTRASTIVE.BN_MLP`` / ``BN_SYNC_MLP``).
        last_norm: also normalise the output, with a norm *without* affine parameters, as in the
            SimSiam projector (and BYOL variants that do so): the output is then standardised per
            feature and a learnable scale/shift there would only re-open the collapse direction the
            norm is meant to close. Calls ``norm(out_dim, affine=False)``, so ``norm`` must accept
            ``affine`` (``nn.BatchNorm1d``, ``nn.SyncBatchNorm`` do) and must not be None.
        activation: ``activation() -> nn.Module`` put after every hidden norm.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int,
        norm: Optional[Callable[..., nn.Module]],
        last_norm: bool = False,
        activation: Callable[[], nn.Module] = nn.ReLU,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if last_norm and norm is None:
            raise ValueError("last_norm=True needs a norm callable, got norm=None")
        self.in_dim = in_dim
        self.hidden_dim = hidden_dim
        self.out_dim = out_dim
        self.num_layers = num_layers

        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers = []
        for i in range(num_layers):
            is_last = i == num_layers - 1
            followed_by_norm = (last_norm if is_last else norm is not None)
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=not followed_by_norm))
            if not is_last:
                if norm is not None:
                    layers.append(norm(dims[i + 1]))
                layers.append(activation())
            elif last_norm:
                try:
                    layers.append(norm(out_dim, affine=False))
                except TypeError as err:
                    raise ValueError(
                        f"last_norm needs a norm accepting affine=False, {norm!r} does not"
                    ) from err
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features ``(B, D_in)`` to ``(B, D_out)``."""
        return self.layers(x)
