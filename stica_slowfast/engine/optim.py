"""Optimiser construction, learning-rate schedule and gradient clipping.

Key names follow PySlowFast (``SOLVER.*``, ``BN.WEIGHT_DECAY``); the schedule reproduces its "cosine" and
"steps_with_relative_lrs" policies with linear warmup.

Learning-rate scaling
---------------------
PySlowFast multiplies ``SOLVER.BASE_LR``, ``SOLVER.WARMUP_START_LR`` and ``SOLVER.COSINE_END_LR`` by
``NUM_SHARDS`` in place inside ``assert_and_infer_cfg``. Here the scaling is applied when an LR is read
(:func:`get_lr_at_epoch`), never written back into the config, so a config saved in a checkpoint and
merged again on resume is not scaled twice. The same factor

    scale = (global_batch_size / STICA.SOLVER.REFERENCE_BATCH_SIZE   if that key is > 0)
          * (NUM_SHARDS                                             if SOLVER.BASE_LR_SCALE_NUM_SHARDS)

multiplies all three LRs (base, warmup start, cosine end). Scaling the two end points with the base keeps
the *shape* of the schedule (e.g. warmup from 1/10 of the peak, decay to 1/1000 of it) independent of the
batch size, which is what the linear scaling rule (Goyal et al. 2017, arXiv:1706.02677) asks for.

Parameter groups
----------------
:func:`build_param_groups` splits the trainable parameters into at most four groups, each tagged with a
``"name"`` and a ``"lars_exclude"`` flag so that a LARS wrapper can skip the trust-ratio adaptation for
norm parameters and biases (as in SimCLR/BYOL) without re-deriving which parameter is which:

    name        weight_decay          lars_exclude   holds
    "decay"     SOLVER.WEIGHT_DECAY   False          weights with >= 2 dims outside norm layers
    "decay_1d"  SOLVER.WEIGHT_DECAY   True           <= 1-dim params outside norm layers (biases)
    "norm"      BN.WEIGHT_DECAY       True           params of BatchNorm/SyncBN/GroupNorm/LayerNorm/...
    "no_decay"  0                     True           every <= 1-dim param when SOLVER.ZERO_WD_1D_PARAM

A group may carry ``"lr_scale"``; :func:`set_lr` multiplies the scheduled LR by it. A model asks for
such groups with an ``lr_scales`` attribute, ``{submodule name: multiplier}`` (e.g. RhoBYOL's
``{"predictor": 10.0}``): the parameters under that submodule then form groups of their own (named
e.g. ``"decay@predictor"``), with the same decay rules.
"""

import bisect
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Union

import torch
from fvcore.common.config import CfgNode
from torch import nn

from stica_slowfast.utils.misc import unwrap

__all__ = [
    "NORM_TYPES",
    "build_param_groups",
    "get_param_groups",
    "construct_optimizer",
    "lr_scale_factor",
    "get_lr_at_epoch",
    "set_lr",
    "clip_gradients",
    "optimizer_step",
]

# Module types whose parameters count as "norm" parameters (BN.WEIGHT_DECAY, excluded from LARS).
# _BatchNorm covers BatchNorm1d/2d/3d, their lazy variants and SyncBatchNorm.
NORM_TYPES = tuple(
    t
    for t in (
        nn.modules.batchnorm._BatchNorm,
        nn.modules.instancenorm._InstanceNorm,
        nn.GroupNorm,
        nn.LayerNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),  # torch >= 2.4
    )
    if t is not None
)

_SUPPORTED_METHODS = ("sgd", "adamw", "lars")
_SUPPORTED_POLICIES = ("cosine", "steps_with_relative_lrs")


# ------------------------------------------------------------------------------------------------ #
# Parameter groups
# ------------------------------------------------------------------------------------------------ #
def build_param_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    norm_weight_decay: float,
    zero_wd_1d: bool,
    lr_scales: Optional[Mapping[str, float]] = None,
) -> List[Dict[str, Any]]:
    """Split the trainable parameters of ``model`` into weight-decay / LARS (/ LR-scale) groups.

    cfg-free so that other optimisers (LARS) and tests can call it directly; see the module docstring
    for the groups. Parameters with ``requires_grad=False`` (frozen backbones, momentum encoders) are
    left out entirely, and a parameter shared by several modules is placed once.

    Args:
        model: The model (a DDP wrapper works too: its parameters are the wrapped model's).
        weight_decay: Decay of ordinary parameters (``SOLVER.WEIGHT_DECAY``).
        norm_weight_decay: Decay of norm-layer parameters (``BN.WEIGHT_DECAY``).
        zero_wd_1d: Put every parameter with at most one dimension (biases, norm affine parameters,
            learnable scalars) in a group without weight decay (``SOLVER.ZERO_WD_1D_PARAM``).
        lr_scales: ``{submodule name: LR multiplier}`` (names as in ``named_modules()`` of the
            unwrapped model); the parameters under such a submodule go to groups of their own with
            ``"lr_scale"``. A name that matches no submodule is a ValueError.

    Returns:
        A list of param-group dicts with keys ``"params"``, ``"weight_decay"``, ``"lars_exclude"`` and
        ``"name"`` (and ``"lr_scale"`` for scaled groups), in a fixed order (decay, decay_1d, norm,
        no_decay, then the same for each scaled submodule); empty groups are dropped.
    """
    base = {
        "decay": {"weight_decay": weight_decay, "lars_exclude": False},
        "decay_1d": {"weight_decay": weight_decay, "lars_exclude": True},
        "norm": {"weight_decay": norm_weight_decay, "lars_exclude": True},
        "no_decay": {"weight_decay": 0.0, "lars_exclude": True},
    }
    scales = dict(lr_scales or {})
    modules = dict(unwrap(model).named_modules())
    unknown = sorted(set(scales) - set(modules))
    if unknown:
        raise ValueError(f"lr_scales names no submodule of the model: {unknown}")
    def group_name(kind: str, owner: str) -> str:  # owner "": the model outside any scaled submodule
        return f"{kind}@{owner}" if owner else kind

    groups: Dict[str, Dict[str, Any]] = {}
    for owner in ["", *scales]:
        for kind, options in base.items():
            groups[group_name(kind, owner)] = {
                "params": [], **options, **({"lr_scale": float(scales[owner])} if owner else {})}
    seen = set()
    for module_name, module in modules.items():
        # The innermost scaled submodule holding this module, if any.
        owner = max((o for o in scales if module_name == o or module_name.startswith(o + ".")),
                    key=len, default="")
        is_norm = isinstance(module, NORM_TYPES)
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            if zero_wd_1d and param.ndim <= 1:
                name = "no_decay"
            elif is_norm:
                name = "norm"
            elif param.ndim <= 1:
                name = "decay_1d"
            else:
                name = "decay"
            groups[group_name(name, owner)]["params"].append(param)
    return [dict(group, name=name) for name, group in groups.items() if group["params"]]


def get_param_groups(
    model: nn.Module, cfg: CfgNode, lr_scales: Optional[Mapping[str, float]] = None
) -> List[Dict[str, Any]]:
    """:func:`build_param_groups` with the decays read from ``cfg``.

    Args:
        model: The model to optimise.
        cfg: Config with ``SOLVER.WEIGHT_DECAY``, ``BN.WEIGHT_DECAY`` and ``SOLVER.ZERO_WD_1D_PARAM``.
        lr_scales: ``{submodule name: LR multiplier}`` (a registered model's ``lr_scales``).

    Returns:
        The tagged param groups.
    """
    return build_param_groups(
        model,
        weight_decay=float(cfg.SOLVER.WEIGHT_DECAY),
        norm_weight_decay=float(cfg.BN.WEIGHT_DECAY),
        zero_wd_1d=bool(cfg.SOLVER.ZERO_WD_1D_PARAM),
        lr_scales=lr_scales,
    )


def construct_optimizer(
    model: nn.Module, cfg: CfgNode, lr_scales: Optional[Mapping[str, float]] = None
) -> torch.optim.Optimizer:
    """Build the optimiser named by ``SOLVER.OPTIMIZING_METHOD`` over the tagged param groups.

    The initial LR of every group is the schedule's value at epoch 0 for the global batch
    ``TRAIN.BATCH_SIZE``, so an optimiser used before the first :func:`set_lr` call is already right.

    Args:
        model: The model to optimise; frozen parameters are excluded.
        cfg: Full config (``SOLVER.*``, ``BN.WEIGHT_DECAY``, ``TRAIN.BATCH_SIZE``, ...).
        lr_scales: ``{submodule name: LR multiplier}``: the trainer passes the model's ``lr_scales``
            (:class:`~stica_slowfast.models.api.Model`); None scales nothing.

    Returns:
        A ``torch.optim.SGD`` ("sgd": MOMENTUM, DAMPENING, NESTEROV), ``torch.optim.AdamW``
        ("adamw": BETAS) or :class:`~stica_slowfast.engine.lars.LARS` ("lars": MOMENTUM, NESTEROV,
        ``STICA.SOLVER.LARS_ETA``; groups flagged ``lars_exclude`` get plain SGD) instance.

    Raises:
        ValueError: unknown ``SOLVER.OPTIMIZING_METHOD``, no trainable parameter, an SGD setting
            torch rejects (Nesterov without momentum or with dampening), or LARS with dampening.
    """
    method = str(cfg.SOLVER.OPTIMIZING_METHOD).lower()
    if method not in _SUPPORTED_METHODS:
        raise ValueError(
            f"Unknown SOLVER.OPTIMIZING_METHOD {cfg.SOLVER.OPTIMIZING_METHOD!r}; "
            f"expected one of {list(_SUPPORTED_METHODS)}."
        )
    groups = get_param_groups(model, cfg, lr_scales)
    if not groups:
        raise ValueError("The model has no parameter with requires_grad=True to optimise.")
    lr = get_lr_at_epoch(cfg, 0.0, int(cfg.TRAIN.BATCH_SIZE))

    if method == "sgd":
        momentum = float(cfg.SOLVER.MOMENTUM)
        dampening = float(cfg.SOLVER.DAMPENING)
        nesterov = bool(cfg.SOLVER.NESTEROV)
        if nesterov and (momentum <= 0 or dampening != 0):
            # torch raises too, but without naming the config keys to change.
            raise ValueError(
                "SOLVER.NESTEROV True needs SOLVER.MOMENTUM > 0 and SOLVER.DAMPENING 0 "
                f"(got MOMENTUM={momentum}, DAMPENING={dampening})."
            )
        optimizer: torch.optim.Optimizer = torch.optim.SGD(
            groups,
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=float(cfg.SOLVER.WEIGHT_DECAY),
        )
    elif method == "lars":
        if float(cfg.SOLVER.DAMPENING) != 0:
            raise ValueError(
                f"SOLVER.OPTIMIZING_METHOD 'lars' has no dampening; set SOLVER.DAMPENING 0 "
                f"(got {cfg.SOLVER.DAMPENING})."
            )
        # Deferred import: lars.py is a leaf module, kept out of optim's import-time dependencies.
        from .lars import LARS

        optimizer = LARS(
            groups,
            lr=lr,
            momentum=float(cfg.SOLVER.MOMENTUM),
            weight_decay=float(cfg.SOLVER.WEIGHT_DECAY),
            eta=_lars_eta(cfg),
            nesterov=bool(cfg.SOLVER.NESTEROV),
        )
    else:
        optimizer = torch.optim.AdamW(
            groups,
            lr=lr,
            # YAML merges turn the default tuple into a list.
            betas=tuple(float(b) for b in cfg.SOLVER.BETAS),
            weight_decay=float(cfg.SOLVER.WEIGHT_DECAY),
        )
    # Each group starts at its own scaled LR, as set_lr would set it.
    set_lr(optimizer, lr)
    return optimizer


# ------------------------------------------------------------------------------------------------ #
# Learning-rate schedule
# ------------------------------------------------------------------------------------------------ #
def lr_scale_factor(cfg: CfgNode, global_batch_size: int) -> float:
    """Factor applied to BASE_LR, WARMUP_START_LR and COSINE_END_LR (see the module docstring).

    Args:
        cfg: Config with ``STICA.SOLVER.REFERENCE_BATCH_SIZE``, ``SOLVER.BASE_LR_SCALE_NUM_SHARDS`` and
            ``NUM_SHARDS``.
        global_batch_size: Clips per optimisation step summed over all processes.

    Returns:
        The multiplicative LR scale (1.0 when no scaling is configured).
    """
    scale = 1.0
    reference = _reference_batch_size(cfg)
    if reference > 0:
        if global_batch_size <= 0:
            raise ValueError(f"global_batch_size must be positive, got {global_batch_size}.")
        scale *= global_batch_size / reference
    if cfg.SOLVER.BASE_LR_SCALE_NUM_SHARDS:
        scale *= int(cfg.NUM_SHARDS)
    return scale


def get_lr_at_epoch(cfg: CfgNode, cur_epoch: float, global_batch_size: int) -> float:
    """Learning rate at a (fractional) epoch: linear warmup, then the policy ``SOLVER.LR_POLICY``.

    Policies (all LRs already multiplied by :func:`lr_scale_factor`):

    * ``"cosine"``: ``end + (base - end) * (1 + cos(pi * (e - o) / (MAX_EPOCH - o))) / 2`` with
      ``o = WARMUP_EPOCHS`` if ``SOLVER.COSINE_AFTER_WARMUP`` else 0 (PySlowFast's default counts the
      cosine from epoch 0, so the peak is never reached exactly when there is a warmup).
    * ``"steps_with_relative_lrs"``: ``base * LRS[i]`` where ``STEPS[i] <= e < STEPS[i + 1]``.

    During ``e < WARMUP_EPOCHS`` the LR goes linearly from ``WARMUP_START_LR`` (at e = 0) to the policy's
    value at ``e = WARMUP_EPOCHS``.

    Args:
        cfg: Config (``SOLVER.*``, ``NUM_SHARDS``, ``STICA.SOLVER.REFERENCE_BATCH_SIZE``).
        cur_epoch: Epoch as a float, e.g. ``epoch + iter / iters_per_epoch``.
        global_batch_size: Clips per step summed over all processes (used only when
            ``STICA.SOLVER.REFERENCE_BATCH_SIZE`` > 0).

    Returns:
        The learning rate.

    Raises:
        ValueError: unknown ``SOLVER.LR_POLICY`` or inconsistent ``SOLVER.STEPS`` / ``SOLVER.LRS``.
    """
    scale = lr_scale_factor(cfg, global_batch_size)
    warmup_epochs = float(cfg.SOLVER.WARMUP_EPOCHS)
    if warmup_epochs > 0 and cur_epoch < warmup_epochs:
        start = float(cfg.SOLVER.WARMUP_START_LR) * scale
        end = _policy_lr(cfg, warmup_epochs, scale)
        return start + (end - start) * (cur_epoch / warmup_epochs)
    return _policy_lr(cfg, cur_epoch, scale)


def _policy_lr(cfg: CfgNode, cur_epoch: float, scale: float) -> float:
    """The schedule policy's LR at ``cur_epoch`` without warmup."""
    policy = str(cfg.SOLVER.LR_POLICY)
    base = float(cfg.SOLVER.BASE_LR) * scale
    if policy == "cosine":
        end = float(cfg.SOLVER.COSINE_END_LR) * scale
        offset = float(cfg.SOLVER.WARMUP_EPOCHS) if cfg.SOLVER.COSINE_AFTER_WARMUP else 0.0
        length = float(cfg.SOLVER.MAX_EPOCH) - offset
        if length <= 0:
            raise ValueError(
                f"SOLVER.MAX_EPOCH ({cfg.SOLVER.MAX_EPOCH}) must exceed the cosine offset "
                f"({offset}, SOLVER.WARMUP_EPOCHS with SOLVER.COSINE_AFTER_WARMUP)."
            )
        # Clamp so that an epoch past MAX_EPOCH stays at the end LR instead of rising again.
        progress = min(max((cur_epoch - offset) / length, 0.0), 1.0)
        return end + (base - end) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if policy == "steps_with_relative_lrs":
        steps = [float(s) for s in cfg.SOLVER.STEPS]
        lrs = [float(r) for r in cfg.SOLVER.LRS]
        if not steps or len(steps) != len(lrs) or steps[0] != 0 or steps != sorted(steps):
            raise ValueError(
                "SOLVER.STEPS must be sorted, start at 0 and have one entry per SOLVER.LRS entry "
                f"(got STEPS={list(cfg.SOLVER.STEPS)}, LRS={list(cfg.SOLVER.LRS)})."
            )
        index = bisect.bisect_right(steps, cur_epoch) - 1
        return base * lrs[max(index, 0)]
    raise ValueError(
        f"Unknown SOLVER.LR_POLICY {policy!r}; expected one of {list(_SUPPORTED_POLICIES)}."
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the LR of every param group, multiplied by the group's ``"lr_scale"`` when it has one.

    Args:
        optimizer: The optimiser to update in place.
        lr: The scheduled (already batch-scaled) learning rate.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr * float(group.get("lr_scale", 1.0))


# ------------------------------------------------------------------------------------------------ #
# Gradient clipping
# ------------------------------------------------------------------------------------------------ #
def clip_gradients(
    params: Union[Iterable[torch.Tensor], Iterable[Dict[str, Any]]], cfg: CfgNode
) -> Optional[torch.Tensor]:
    """Clip gradients in place as configured by ``SOLVER.CLIP_GRAD_VAL`` / ``SOLVER.CLIP_GRAD_L2NORM``.

    Both may be set: values are clipped first, then the global norm. With AMP call
    ``scaler.unscale_(optimizer)`` before this, otherwise the thresholds apply to scaled gradients.

    Args:
        params: Parameters (or an optimiser's ``param_groups``) whose ``.grad`` to clip.
        cfg: Config with ``SOLVER.CLIP_GRAD_VAL`` and ``SOLVER.CLIP_GRAD_L2NORM`` (None = off).

    Returns:
        The total gradient L2 norm before norm clipping (a 0-dim tensor on the gradients' device: no
        host sync) when ``CLIP_GRAD_L2NORM`` is set, else None.
    """
    clip_val = cfg.SOLVER.CLIP_GRAD_VAL
    clip_norm = cfg.SOLVER.CLIP_GRAD_L2NORM
    if clip_val is None and clip_norm is None:
        return None
    tensors: List[torch.Tensor] = []
    for item in params:
        if isinstance(item, dict):  # an optimiser param group
            tensors.extend(item["params"])
        else:
            tensors.append(item)
    tensors = [p for p in tensors if p.grad is not None]
    if clip_val is not None:
        torch.nn.utils.clip_grad_value_(tensors, float(clip_val))
    if clip_norm is not None:
        return torch.nn.utils.clip_grad_norm_(tensors, float(clip_norm))
    return None


def optimizer_step(
    loss: torch.Tensor,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Optional[torch.amp.GradScaler],
    cfg: CfgNode,
) -> None:
    """One update from ``loss``: zero the gradients, backward (scaled when ``scaler``, float16 AMP),
    :func:`clip_gradients`, optimiser step. The trainer and ``tools/benchmark.py`` both use it."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
        clip_gradients(model.parameters(), cfg)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        clip_gradients(model.parameters(), cfg)
        optimizer.step()


def _reference_batch_size(cfg: CfgNode) -> int:
    """``STICA.SOLVER.REFERENCE_BATCH_SIZE``, or 0 for a config without the STICA subtree."""
    stica = cfg.get("STICA", None)
    solver = stica.get("SOLVER", None) if stica is not None else None
    return int(solver.get("REFERENCE_BATCH_SIZE", 0)) if solver is not None else 0


def _lars_eta(cfg: CfgNode) -> float:
    """``STICA.SOLVER.LARS_ETA``, or You et al.'s 0.001 for a config without that key."""
    stica = cfg.get("STICA", None)
    solver = stica.get("SOLVER", None) if stica is not None else None
    return float(solver.get("LARS_ETA", 0.001)) if solver is not None else 0.001
