"""Tests for stica_slowfast.checkpoint: round trip, naming, atomic writes, prefixes, errors."""

import os

import pytest
import torch
from fvcore.common.config import CfgNode
from torch import nn

from stica_slowfast.config import get_cfg
from stica_slowfast.checkpoint import io as ckpt_mod
from stica_slowfast.checkpoint import (
    CheckpointMismatchError,
    checkpoint_path,
    get_last_checkpoint,
    list_checkpoints,
    load_checkpoint,
    load_last_good_checkpoint,
    prune_mid_epoch_checkpoints,
    save_checkpoint,
)


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv3d(3, 4, 3),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    )


def _optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def _train_steps(model, optimizer, steps=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = model(torch.randn(2, 3, 4, 6, 6, generator=gen)).square().mean()
        loss.backward()
        optimizer.step()


def _assert_state_equal(a, b):
    """Recursive exact equality of (nested) state dicts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b)
        for key in a:
            _assert_state_equal(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_state_equal(x, y)
    else:
        assert a == b


class _Scaler:
    """Stand-in for torch.amp.GradScaler (only state_dict/load_state_dict are used)."""

    def __init__(self, scale):
        self.scale = scale

    def state_dict(self):
        return {"scale": self.scale, "growth_tracker": 3}

    def load_state_dict(self, state):
        self.scale = state["scale"]


def test_checkpoint_path_format(tmp_path):
    path = checkpoint_path(str(tmp_path), 5)
    assert path == os.path.join(str(tmp_path), "checkpoints", "checkpoint_epoch_00005.pyth")


def test_round_trip_restores_model_optimizer_and_scaler_exactly(tmp_path):
    cfg = get_cfg()
    model, opt = _model(0), None
    opt = _optimizer(model)
    _train_steps(model, opt)
    path = save_checkpoint(str(tmp_path), 4, model, opt, cfg, scaler=_Scaler(1024.0))
    # The 0-based epoch 4 is stored in file number 5.
    assert path == checkpoint_path(str(tmp_path), 5) and os.path.isfile(path)

    model2 = _model(seed=123)
    opt2 = _optimizer(model2)
    scaler2 = _Scaler(1.0)
    epoch = load_checkpoint(path, model2, opt2, scaler2)
    assert epoch == 4
    assert scaler2.scale == 1024.0
    _assert_state_equal(model.state_dict(), model2.state_dict())
    _assert_state_equal(opt.state_dict(), opt2.state_dict())

    # Continuing training from both gives bit-identical parameters (momentum buffers restored).
    _train_steps(model, opt, seed=7)
    _train_steps(model2, opt2, seed=7)
    _assert_state_equal(model.state_dict(), model2.state_dict())


def test_stored_fields_and_cfg_reloads_with_fvcore(tmp_path):
    cfg = get_cfg()
    cfg.SOLVER.BASE_LR = 0.123
    cfg.STICA.SOLVER.REFERENCE_BATCH_SIZE = 256
    model = _model()
    path = save_checkpoint(str(tmp_path), 0, model, _optimizer(model), cfg)
    with open(path, "rb") as f:
        raw = torch.load(f, map_location="cpu", weights_only=True)
    assert set(raw) == {"epoch", "model_state", "optimizer_state", "cfg"}
    assert raw["epoch"] == 0
    loaded = CfgNode.load_cfg(raw["cfg"])
    assert loaded.dump() == cfg.dump()  # YAML turns tuples into lists, so compare the dumps
    assert loaded.SOLVER.BASE_LR == 0.123 and loaded.STICA.SOLVER.REFERENCE_BATCH_SIZE == 256
    fresh = get_cfg()
    fresh.merge_from_other_cfg(loaded)
    assert fresh == cfg


def test_get_last_checkpoint_picks_highest_and_ignores_temp_files(tmp_path):
    out = str(tmp_path)
    assert get_last_checkpoint(out) is None
    model, cfg = _model(), get_cfg()
    for epoch in (0, 9, 2):
        save_checkpoint(out, epoch, model, None, cfg)
    directory = os.path.join(out, "checkpoints")
    # Leftovers of an interrupted save and unrelated files must be ignored.
    leftovers = (
        ".checkpoint_epoch_00011.pyth.tmp-123-abcd",
        "checkpoint_epoch_00012.pyth.tmp",
        "notes.txt",
    )
    for name in leftovers:
        with open(os.path.join(directory, name), "wb") as f:
            f.write(b"\x00garbage")
    assert get_last_checkpoint(out) == checkpoint_path(out, 10)
    assert [e for e, _ in list_checkpoints(out)] == [1, 3, 10]


def test_non_master_writes_nothing(tmp_path):
    path = save_checkpoint(str(tmp_path), 0, _model(), None, get_cfg(), is_master=False)
    assert path == checkpoint_path(str(tmp_path), 1)
    assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints"))


def test_crash_during_save_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    out = str(tmp_path)
    model, cfg = _model(0), get_cfg()
    good = save_checkpoint(out, 0, model, None, cfg)
    good_bytes = open(good, "rb").read()

    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        # Write a truncated payload, then die as a full disk or a kill signal would.
        f.write(b"PK\x03\x04 truncated")
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(ckpt_mod.torch, "save", crashing_save)
    other = _model(seed=5)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(out, 1, other, None, cfg)  # new file number 2
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(out, 0, other, None, cfg)  # overwriting number 1
    monkeypatch.setattr(ckpt_mod.torch, "save", real_save)

    names = os.listdir(os.path.join(out, "checkpoints"))
    assert names == ["checkpoint_epoch_00001.pyth"]  # no partial .pyth, no temp file left
    assert get_last_checkpoint(out) == good
    assert open(good, "rb").read() == good_bytes  # the previous file is untouched
    fresh = _model(seed=9)
    assert load_checkpoint(good, fresh) == 0
    _assert_state_equal(model.state_dict(), fresh.state_dict())


def test_save_unwraps_data_parallel(tmp_path):
    model = _model()
    wrapped = nn.DataParallel(model)  # CPU-only: a plain wrapper with "module." keys
    path = save_checkpoint(str(tmp_path), 2, wrapped, None, get_cfg())
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert not any(k.startswith("module.") for k in raw["model_state"])
    # And a plain checkpoint loads back into the wrapped model.
    target = nn.DataParallel(_model(seed=3))
    assert load_checkpoint(path, target) == 2
    _assert_state_equal(model.state_dict(), target.module.state_dict())


def test_load_module_prefix_either_way(tmp_path):
    model = _model(0)
    # A DDP model saved without unwrapping (as some PySlowFast forks do).
    prefixed = {"module." + k: v for k, v in model.state_dict().items()}
    path = os.path.join(str(tmp_path), "ddp.pyth")
    torch.save({"epoch": 7, "model_state": prefixed, "cfg": get_cfg().dump()}, path)
    plain = _model(seed=1)
    assert load_checkpoint(path, plain) == 7
    _assert_state_equal(model.state_dict(), plain.state_dict())

    # Plain keys into a model whose own keys all carry the prefix (not a DDP instance).
    path2 = save_checkpoint(str(tmp_path), 0, model, None, get_cfg())
    container = nn.Module()
    container.module = _model(seed=2)
    load_checkpoint(path2, container)
    _assert_state_equal(model.state_dict(), container.module.state_dict())


def test_strict_mismatch_error_lists_keys_and_shapes(tmp_path):
    model = _model(0)
    path = save_checkpoint(str(tmp_path), 0, model, None, get_cfg())

    # Missing key "6.*" (an extra layer in the model) and a shape mismatch in the classifier.
    torch.manual_seed(0)
    other = nn.Sequential(
        nn.Conv3d(3, 4, 3),
        nn.BatchNorm3d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool3d(1),
        nn.Flatten(),
        nn.Linear(4, 5),
        nn.Linear(5, 2),
    )
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(path, other)
    message = str(info.value)
    assert "missing keys" in message and "6.weight" in message and "6.bias" in message
    assert "5.weight" in message and "(3, 4)" in message and "(5, 4)" in message

    # Unexpected keys, truncated after ten per category.
    smaller = nn.Module()
    smaller.head = nn.Linear(2, 2)
    big = nn.Sequential(*[nn.Linear(2, 2) for _ in range(15)])
    path_big = save_checkpoint(str(tmp_path / "big"), 0, big, None, get_cfg())
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(path_big, smaller)
    message = str(info.value)
    assert "unexpected keys (30)" in message and "... and 20 more" in message
    assert "missing keys (2): head.weight, head.bias" in message

    # strict=False loads what matches and skips the rest.
    before = other[6].weight.detach().clone()
    assert load_checkpoint(path, other, strict=False) == 0
    assert torch.equal(other[0].weight, model[0].weight)
    assert torch.equal(other[6].weight, before)


def test_mid_epoch_checkpoints_sort_between_the_epochs_and_resume_where_they_were(tmp_path):
    out, model = str(tmp_path), _model()
    assert checkpoint_path(out, 2, 300).endswith(os.path.join("checkpoints", "checkpoint_epoch_00002_iter_000300.pyth"))
    save_checkpoint(out, 0, model, None, get_cfg())
    state = {"world_size": 1, "ranks": [{"samples": 8, "logs": {"loss": [0.5, 0.25]}}]}
    mid = save_checkpoint(out, 0, model, None, get_cfg(), iteration=12, train_state=state)
    save_checkpoint(out, 0, model, None, get_cfg(), iteration=3)
    assert [os.path.basename(p) for _, p in list_checkpoints(out)] == [
        "checkpoint_epoch_00001.pyth", "checkpoint_epoch_00001_iter_000003.pyth", "checkpoint_epoch_00001_iter_000012.pyth"]
    resumed = load_last_good_checkpoint(out, _model())
    assert resumed == (mid, 0, 12, state)  # epoch 0 finished, 12 iterations of epoch 1 (0-based) done
    # A loader that knows epoch files only (PySlowFast's) resumes at that epoch's start.
    assert load_checkpoint(mid, _model()) == 0


def _touch_checkpoints(out, keys):
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)
    for epochs, iteration in keys:
        open(checkpoint_path(out, epochs, iteration), "wb").close()


def _left(out):
    return [(e, int(p.rsplit("_iter_", 1)[1][:6]) if "_iter_" in p else 0) for e, p in list_checkpoints(out)]


def test_pruning_keeps_the_newest_mid_epoch_checkpoints_and_every_epoch_checkpoint(tmp_path):
    out = str(tmp_path)
    _touch_checkpoints(out, [(1, 0), (1, 5), (1, 10), (1, 15), (2, 0), (2, 5)])
    # After (2, 5): the mid-epoch files of epoch 2 before it, at most keep - 1; those before the
    # epoch-2 checkpoint are superseded.
    assert prune_mid_epoch_checkpoints(out, checkpoint_path(out, 2, 5), keep=3) == [
        checkpoint_path(out, 1, i) for i in (5, 10, 15)]
    assert _left(out) == [(1, 0), (2, 0), (2, 5)]
    _touch_checkpoints(out, [(2, 10), (2, 15)])
    prune_mid_epoch_checkpoints(out, checkpoint_path(out, 2, 15), keep=2)
    assert _left(out) == [(1, 0), (2, 0), (2, 10), (2, 15)]
    prune_mid_epoch_checkpoints(out, checkpoint_path(out, 2, 15), keep=1)
    assert _left(out) == [(1, 0), (2, 0), (2, 15)]
    # An epoch checkpoint makes every mid-epoch one before it needless; files after the one just
    # written (an unusable newer file a resume skipped) stay.
    _touch_checkpoints(out, [(3, 0), (3, 7)])
    assert prune_mid_epoch_checkpoints(out, checkpoint_path(out, 2, 15), keep=2) == []
    prune_mid_epoch_checkpoints(out, checkpoint_path(out, 3, 0), keep=5)
    assert _left(out) == [(1, 0), (2, 0), (3, 0), (3, 7)]
