"""Small run-time helpers: seeding, moving batches to a device, model statistics."""

import logging
import random
from typing import Any, Dict, Mapping, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

logger = logging.getLogger(__name__)


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch (callers add the rank so processes differ)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_states(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """This process's random states (python, numpy, torch, and ``device``'s when it is CUDA), as
    tensors and numbers (a checkpoint read with ``weights_only=True`` holds them)."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: Dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_states(state: Mapping[str, Any], device: Optional[torch.device] = None) -> None:
    """Restore what :func:`rng_states` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached"]))
    torch.set_rng_state(state["torch"])
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that is a function of ``seed`` and ``keys`` only (e.g. epoch, rank, stream).

    Hashed with numpy's ``SeedSequence``, so nearby inputs (epoch 3 of rank 0, epoch 2 of rank 1)
    give unrelated streams, unlike ``seed + epoch + rank``.

    Args:
        seed: the run's ``RNG_SEED`` (any int; negative values are taken modulo 2**64).
        keys: non-negative ints that pick the stream.

    Returns:
        An int in ``[0, 2**32)``, valid for python, numpy and torch.
    """
    return int(derive_seeds(seed, *keys, count=1)[0])


def derive_seeds(seed: int, *keys: int, count: int) -> np.ndarray:
    """The first ``count`` seeds of the stream of (``seed``, ``keys``), in one call.

    Seed ``i`` does not depend on ``count``, and seed 0 is :func:`derive_seed` ``(seed, *keys)``;
    about 0.2 us a seed where :func:`derive_seed` takes 20 us.

    Returns:
        ``count`` seeds, uint32 (``int()`` of one is valid for python, numpy and torch).
    """
    entropy = [seed % 2**64, *(int(k) for k in keys)]
    return np.random.SeedSequence(entropy).generate_state(count, np.uint32)


def move_to_device(obj: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Move every tensor inside nested lists/tuples/dicts to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=non_blocking)
    if isinstance(obj, dict):
        return {k: move_to_device(v, device, non_blocking) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_to_device(v, device, non_blocking) for v in obj)
    return obj


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside (possibly nested) DistributedDataParallel / DataParallel wrappers.

    Only the wrapper classes are unwrapped: a plain module may own a child called ``module``.
    """
    while isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        model = model.module
    return model


#: The key prefix of a DistributedDataParallel / DataParallel model's state dict.
DDP_PREFIX = "module."


def strip_ddp_prefix(state: Mapping[str, Any]) -> Mapping[str, Any]:
    """``state`` without the ``"module."`` prefix, when *every* key carries it (a DDP model saved
    without unwrapping); ``state`` itself otherwise (a model may own a child called ``module``).

    ``state`` is never modified: the prefix is stripped from a copy, in its order.

    Raises:
        ValueError: two keys would merge. torch renames in place, key by key, so ``module.module.x``
            overwrites a ``module.x`` not yet renamed (a wrapped model with its own child ``module``,
            registered before a sibling of the same structure); refused rather than a tensor lost.
    """
    if not state or not all(k.startswith(DDP_PREFIX) for k in state):
        return state
    stripped: Dict[str, Any] = dict(state)
    consume_prefix_in_state_dict_if_present(stripped, DDP_PREFIX)  # in place
    if len(stripped) != len(state):
        raise ValueError(f"stripping {DDP_PREFIX!r} from the state's keys would merge "
                         f"{len(state) - len(stripped)} of them; unwrap the model before saving it")
    return stripped


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class _Features(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(video)


def feature_gflops(model: nn.Module, input_shape, device: torch.device) -> float:
    """GFLOPs (fvcore counts one multiply-add as one flop) of ``forward_features`` on one clip."""
    from fvcore.nn import FlopCountAnalysis

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(_Features(model), torch.zeros(1, *input_shape, device=device))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return analysis.total() / 1e9
    finally:
        model.train(was_training)


def log_model_info(model: nn.Module, input_shape, device: torch.device) -> None:
    """Log parameter counts and the GFLOPs of one clip of ``input_shape`` (C, T, H, W)."""
    logger.info("Model:\n%s", model)
    logger.info(
        "Params: %.3fM total, %.3fM trainable",
        count_parameters(model) / 1e6,
        count_parameters(model, trainable_only=True) / 1e6,
    )
    try:
        logger.info("GFLOPs per clip %s: %.3f", tuple(input_shape), feature_gflops(model, input_shape, device))
    except Exception as err:  # flop counting must never stop a run
        logger.warning("GFLOP count failed: %s", err)
