"""State dicts in other code bases' checkpoint layouts, rebuilt from the key names, shapes and dtypes
recorded from their own classes (tests/interop/layouts/*.json; each file's "source" says which)."""

import json
import os
from typing import Dict

import torch

LAYOUTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop", "layouts")
NATIVE = "pyslowfast_resnet_slow_8x8_r50.json"  # PySlowFast's ResNet, configs/Kinetics/SLOW_8x8_R50.yaml
ZOO = "pyslowfast_contrastive_byol_slow_r50.json"  # the rho-SSL zoo's ContrastiveModel (BYOL)
GDT = "gdt_av_r2plus1d_18_resnet9.json"  # GDT's model.GDT


def recorded_state(name: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """The recorded layout ``name`` filled with random tensors a network can run on: He-scaled weights,
    BatchNorm scales near 1, positive running variances (a deep trunk's features stay finite)."""
    with open(os.path.join(LAYOUTS_DIR, name)) as f:
        layout = json.load(f)
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, dtype in layout["tensors"]:
        if not dtype.startswith("float"):
            state[key] = torch.randint(0, 100, shape, generator=g, dtype=getattr(torch, dtype))
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) >= 2:
            state[key] = torch.randn(shape, generator=g) * (2 / max(1, torch.Size(shape[1:]).numel())) ** 0.5
        else:
            state[key] = (key.endswith(".weight") * 1.0) + 0.1 * torch.randn(shape, generator=g)
    return state
