"""Interoperation with PySlowFast (``slowfast``), active only when it is importable.

:func:`register` (called by ``import stica_slowfast``) exposes our components under PySlowFast's
lookups:

* ``MODEL`` registry -> ``slowfast.models.build.MODEL_REGISTRY``: ``build_model(cfg)`` by
  ``MODEL.MODEL_NAME``.
* ``LOSS`` registry -> ``slowfast.models.losses._LOSSES`` through the :data:`LOSS_MODULES` adapters:
  ``get_loss_func(name)(reduction="mean")``, then ``loss(*tensors)``.
* ``DATASET`` registry -> ``slowfast.datasets.build.DATASET_REGISTRY`` as ``Ucf101``, ``Hmdb51`` and
  ``Stica<name>`` (``Sticakinetics``...): ``build_dataset(name, cfg, split)``, which looks up
  ``name.capitalize()``.

Names PySlowFast already uses are never replaced: its own ``Kinetics`` dataset stays, ours is reached
as ``sticakinetics`` (every dataset also as ``stica<name>``; our own engine accepts those names too).

What works, and what does not, across the two code bases:

* Models are built by PySlowFast's ``build_model`` (with ``NUM_GPUS 0`` on CPU too). The classifiers
  (``VideoClassifier``, ``LinearProbe``, ``AudioLinearProbe``) follow PySlowFast's calling convention
  ``model([inputs])``: logits in training, ``MODEL.HEAD_ACT`` of them in eval mode, as PySlowFast's
  heads do. The SSL methods train through ``forward_train(batch)`` (our engine); called as
  PySlowFast's loops call a model, or their losses as ``loss_fun(preds, labels)``, they raise a
  ``TypeError`` that says so (PySlowFast's loop would otherwise read features as class scores).
* ``MODEL.ARCH``: our backbones are added to PySlowFast's ``MODEL.SINGLE_PATHWAY_ARCH``; its own
  ``slow`` (``RESNET.DEPTH 50``) is our ``slow_r50``.
* Losses: PySlowFast constructs ``cls(reduction="mean")``. Each adapter below wraps one of our pure
  functions; only ``reduction="mean"`` exists (each function returns a mean), and the temperature
  defaults to our config default (``temperature=`` overrides it). ``sinkhorn_knopp`` is registered
  as a loss in our ``LOSS`` registry but computes codes, not a loss, so it gets no adapter.
* Datasets: ``build_dataset`` builds ours wrapped in :class:`~.pyslowfast_data.PySlowFastDataset`,
  whose items are PySlowFast's ``(inputs, label, index, time, meta)`` (one per (video, view) for
  "test"), so its loaders, train/val loops and multi-view test read our data; our own registry and
  engine keep our dict samples.
* Config: :func:`stica_slowfast.config.pyslowfast.add_pyslowfast_keys` adds the keys of PySlowFast's ``get_cfg()`` that ours lacks,
  so ``tools/run_net.py`` reads a PySlowFast YAML (the keys only PySlowFast reads have no effect
  there). ``stica_slowfast.config.add_stica_config`` extends PySlowFast's own config the other way.
* Checkpoints: :mod:`stica_slowfast.interop.convert` (``tools/convert_checkpoint.py``) maps a Slow-R50
  between our layout and PySlowFast's ``PTVResNet``.
"""

import logging
from typing import Any, Callable, Dict, List

import torch
from torch import nn

from stica_slowfast.losses import (
    byol_loss,
    crop_info_nce,
    cross_modal_info_nce,
    info_nce,
    nt_xent,
    pairwise_info_nce,
    swav_loss,
)
from stica_slowfast.registry import BACKBONE, DATASET, LOSS, MODEL
from stica_slowfast.utils import optional

from .pyslowfast_data import pyslowfast_dataset

__all__ = [
    "LOSS_MODULES",
    "NOT_LOSSES",
    "pyslowfast_dataset_names",
    "register",
]

logger = logging.getLogger(__name__)

#: Prefix of the alias under which every dataset is also registered in PySlowFast (``sticakinetics``).
DATASET_ALIAS_PREFIX = "stica"


# ---------------------------------------------------------------------------------------------------- #
# Loss adapters: PySlowFast-style loss modules around our pure functions
# ---------------------------------------------------------------------------------------------------- #
class _FunctionLoss(nn.Module):
    """A torch-loss-style module around a pure loss function of :mod:`stica_slowfast.losses`.

    ``Loss(reduction="mean", **kwargs)(*tensors, **more_kwargs)`` returns
    ``fn(*tensors, **{**defaults, **kwargs, **more_kwargs})``.

    Args:
        reduction: only ``"mean"``: every wrapped function returns the mean over its samples.
        **kwargs: keyword arguments of the function fixed for this module (e.g. ``temperature``).
    """

    #: The wrapped function (a staticmethod in each subclass).
    fn: Callable[..., torch.Tensor]
    #: Keyword defaults applied before ``kwargs``.
    defaults: Dict[str, Any] = {}

    def __init__(self, reduction: str = "mean", **kwargs: Any) -> None:
        super().__init__()
        if reduction != "mean":
            raise ValueError(f"{type(self).__name__} supports reduction='mean' only, got {reduction!r}")
        self.reduction = reduction
        self.kwargs = {**self.defaults, **kwargs}

    def forward(self, *tensors: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``fn(*tensors)``.

        Raises:
            TypeError: called as PySlowFast's train loop calls ``MODEL.LOSS_FUNC``,
                ``loss_fun(preds, labels)`` (an integer tensor among the inputs): every loss here is a
                loss of embeddings, which that loop does not compute.
        """
        if any(torch.is_tensor(t) and not (t.is_floating_point() or t.is_complex()) for t in tensors):
            raise TypeError(f"{self.fn.__name__} is a self-supervised loss of embeddings, not of (predictions, "
                            f"labels): as MODEL.LOSS_FUNC of PySlowFast's train loop it cannot work; train "
                            f"our SSL methods with stica_slowfast's tools/run_net.py")
        return self.fn(*tensors, **{**self.kwargs, **kwargs})

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


class InfoNCELoss(_FunctionLoss):
    """``(query (N, D), keys (N, D), negatives=None) -> info_nce``; temperature default 0.1
    (``CONTRASTIVE.T``)."""

    fn = staticmethod(info_nce)
    defaults = {"temperature": 0.1}


class NTXentLoss(_FunctionLoss):
    """``(views: list of rho (B, D), or (rho * B, D) with num_views=rho) -> nt_xent``; temperature
    default 0.1 (``CONTRASTIVE.T``)."""

    fn = staticmethod(nt_xent)
    defaults = {"temperature": 0.1}


class BYOLLoss(_FunctionLoss):
    """``(prediction (N, D), target (N, D)) -> byol_loss`` (``2 - 2 cos``, target detached)."""

    fn = staticmethod(byol_loss)


class SwAVLoss(_FunctionLoss):
    """``(scores (N, K), codes (N, K)) -> swav_loss``; temperature default 0.1 (``CONTRASTIVE.T``)."""

    fn = staticmethod(swav_loss)
    defaults = {"temperature": 0.1}


class CrossModalInfoNCELoss(_FunctionLoss):
    """``(video (N, D), audio (N, D)) -> cross_modal_info_nce``; temperature default 0.1
    (``STICA.LOSS.CROSS_MODAL_T``)."""

    fn = staticmethod(cross_modal_info_nce)
    defaults = {"temperature": 0.1}


class CropInfoNCELoss(_FunctionLoss):
    """``(large (N_l, V, B, E), small=None) -> crop_info_nce``; temperature default 0.5
    (``STICA.LOSS.CROP_T``)."""

    fn = staticmethod(crop_info_nce)
    defaults = {"temperature": 0.5}


class PairwiseInfoNCELoss(_FunctionLoss):
    """``(queries (P, B, E), keys (Q, B, E), pair_mask=None) -> pairwise_info_nce``; temperature
    default 0.5 (``STICA.LOSS.CROP_T``)."""

    fn = staticmethod(pairwise_info_nce)
    defaults = {"temperature": 0.5}


#: Our ``LOSS`` registry name -> the module registered under the same name in PySlowFast's table.
LOSS_MODULES: Dict[str, type] = {
    "info_nce": InfoNCELoss,
    "nt_xent": NTXentLoss,
    "byol_loss": BYOLLoss,
    "swav_loss": SwAVLoss,
    "cross_modal_info_nce": CrossModalInfoNCELoss,
    "crop_info_nce": CropInfoNCELoss,
    "pairwise_info_nce": PairwiseInfoNCELoss,
}
#: Entries of our ``LOSS`` registry that are not losses (no adapter): Sinkhorn-Knopp returns codes.
NOT_LOSSES = ("sinkhorn_knopp",)


# ---------------------------------------------------------------------------------------------------- #
# Registration
# ---------------------------------------------------------------------------------------------------- #
def _register_into(registry, name: str, obj: Any) -> None:
    """Add ``obj`` to an fvcore registry unless the name is taken (by it or by PySlowFast's own)."""
    if name not in registry:
        registry._do_register(name, obj)
    elif registry.get(name) is not obj:
        logger.debug("PySlowFast's %s registry already has %r: kept its own", registry._name, name)


def pyslowfast_dataset_names(name: str) -> List[str]:
    """Names under which our dataset ``name`` (lower case, e.g. ``"ucf101"``) is offered to PySlowFast:
    its capitalised name (what ``build_dataset`` looks up) and the ``Stica`` alias."""
    return [name.capitalize(), (DATASET_ALIAS_PREFIX + name).capitalize()]


# Our dataset class -> its PySlowFast-format adapter (one class each, so that registering twice adds nothing).
_ADAPTERS: Dict[type, type] = {}


def register() -> bool:
    """Register our models, losses and datasets into PySlowFast's tables (see the module docstring).

    Idempotent: a second call adds nothing. An entry PySlowFast already has under the same name is left
    as it is.

    Returns:
        True when all three of PySlowFast's tables were importable and filled, False otherwise
        (PySlowFast absent, or failing to import, e.g. without detectron2).
    """
    reached = 0
    models = optional.import_optional("slowfast.models.build")
    if models is not None:
        for name, obj in MODEL:
            _register_into(models.MODEL_REGISTRY, name, obj)
        reached += 1
    losses = optional.import_optional("slowfast.models.losses")
    if losses is not None and isinstance(getattr(losses, "_LOSSES", None), dict):
        for name, _ in LOSS:
            if name in NOT_LOSSES:
                continue
            module = LOSS_MODULES.get(name)
            if module is None:
                logger.warning("loss %r has no PySlowFast adapter in interop.pyslowfast.LOSS_MODULES", name)
            elif losses._LOSSES.setdefault(name, module) is not module:
                logger.debug("PySlowFast's loss table already has %r: kept its own", name)
        reached += 1
    defaults = optional.import_optional("slowfast.config.defaults")
    arch_list = getattr(getattr(getattr(defaults, "_C", None), "MODEL", None), "SINGLE_PATHWAY_ARCH", None)
    if isinstance(arch_list, list):  # so that its pack_pathway_output takes our MODEL.ARCH names
        arch_list.extend(name for name, _ in BACKBONE if name not in arch_list)
    datasets = optional.import_optional("slowfast.datasets.build")
    if datasets is not None:
        for name, cls in DATASET:
            adapter = _ADAPTERS.setdefault(cls, pyslowfast_dataset(cls))
            for alias in pyslowfast_dataset_names(name.lower()):
                _register_into(datasets.DATASET_REGISTRY, alias, adapter)
        reached += 1
    return reached == 3
