"""RhoSimCLR across two gloo processes: the negatives of every rank are gathered, so each rank's loss
equals a single process's loss on the whole global batch, and the DDP-averaged gradients equal its
gradients. BatchNorm runs in eval mode here so that per-process batch statistics (which differ from
those of the whole batch unless SyncBN is used, a GPU-only layer) do not enter the comparison."""

import os

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from stica_slowfast.config import get_cfg
from stica_slowfast.engine.trainer import TrainStep
from stica_slowfast.models import build_model

from gloo import run_gloo  # tests/gloo.py

WORLD, GLOBAL_BATCH, RHO = 2, 6, 3


def _model():
    cfg = get_cfg()
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.MODEL.MODEL_NAME = "RhoSimCLR"
    cfg.CONTRASTIVE.DIM, cfg.CONTRASTIVE.MLP_DIM, cfg.CONTRASTIVE.T = 16, 32, 0.2
    torch.manual_seed(0)  # the same initial weights in every process
    return build_model(cfg).eval()


def _clips():
    gen = torch.Generator().manual_seed(5)
    return [torch.randn(GLOBAL_BATCH, 3, 4, 32, 32, generator=gen) for _ in range(RHO)]


def _worker(rank: int, out_dir: str) -> None:
    model = _model()
    step = DistributedDataParallel(TrainStep(model))
    rows = slice(rank * GLOBAL_BATCH // WORLD, (rank + 1) * GLOBAL_BATCH // WORLD)
    loss = step({"video": [clip[rows] for clip in _clips()]})["loss"]
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save({"loss": loss.detach(), "grads": grads}, os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.skipif(not dist.is_available(), reason="torch.distributed not available")
def test_two_processes_match_one_process_on_the_global_batch(tmp_path):
    run_gloo(_worker, WORLD, str(tmp_path))
    ranks = [torch.load(os.path.join(tmp_path, f"rank{r}.pt")) for r in range(WORLD)]

    model = _model()
    loss = model.forward_train({"video": _clips()})["loss"]
    loss.backward()
    for res in ranks:
        torch.testing.assert_close(res["loss"], loss.detach(), rtol=1e-5, atol=1e-6)
        assert len(res["grads"]) == sum(p.grad is not None for p in model.parameters()) > 0
        for name, param in model.named_parameters():
            torch.testing.assert_close(res["grads"][name], param.grad, rtol=1e-4, atol=1e-6, msg=name)
