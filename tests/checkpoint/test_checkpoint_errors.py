"""Checkpoint files that are not usable, with real files: each raises one line naming the file (and the
config key it came from) and what it is, still loaded with ``weights_only=True``; a resume skips an
unusable newest checkpoint for the previous good one, with one warning, and deletes nothing."""

import errno
import logging
import os
import pickle
import random
import re

import pytest
import torch
from torch import nn

from stica_slowfast.checkpoint import (
    CheckpointFileError,
    CheckpointMismatchError,
    checkpoint_path,
    load_checkpoint,
    load_last_good_checkpoint,
    naming_config_key,
    read_checkpoint,
    save_checkpoint,
)
from stica_slowfast.config import get_cfg, load_config
from stica_slowfast.engine.entry import main
from stica_slowfast.engine.trainer import resume_or_initialise
from stica_slowfast.models import build_model
from stica_slowfast.synthetic import generate_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG = os.path.join(REPO, "configs", "demo", "rho_byol_tiny.yaml")


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm3d(4), nn.ReLU(), nn.AdaptiveAvgPool3d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def _good_bytes(tmp_path) -> bytes:
    return open(save_checkpoint(str(tmp_path / "good"), 0, _model(), None, get_cfg()), "rb").read()


class _OpensAFile:
    """Unpickling this would create ``path``: proof that loading never runs a file's pickled code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def _write(kind: str, path: str, tmp_path) -> str:
    """Write an unusable file of ``kind`` at ``path``; returns the regex its error must match."""
    if kind == "empty":
        open(path, "wb").close()
        return r"is empty \(0 bytes\): not a torch checkpoint"
    if kind == "truncated":  # a copy killed half way
        good = _good_bytes(tmp_path)
        open(path, "wb").write(good[: len(good) // 2])
        return rf"is truncated \({len(good) // 2} bytes; its zip directory is missing"
    if kind == "truncated_legacy":
        torch.save({"model_state": _model().state_dict()}, path, _use_new_zipfile_serialization=False)
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        return r"is truncated or corrupt \(\d+ bytes; .*\): not a usable torch checkpoint"
    if kind == "text":
        open(path, "w").write("\nMODEL:\n  ARCH: slow_tiny\n")
        return r"is not a torch checkpoint \(a text file starting 'MODEL:'\)"
    if kind == "random":
        open(path, "wb").write(b"\x17" + random.Random(0).randbytes(4095))
        return r"is not a torch checkpoint \(unrecognised binary content starting 17 "
    if kind == "pickle":
        with open(path, "wb") as f:
            pickle.dump({"model_state": [1.0, 2.0]}, f, protocol=4)
        return r"is not a torch checkpoint \(a Python pickle, not a file written by torch.save\)"
    if kind == "whole_module":  # torch.save(model) instead of its state_dict()
        torch.save(nn.Linear(2, 2), path)
        return r"is a torch file of pickled Python objects \(torch.nn.modules.linear.Linear\), not only tensors"
    if kind == "code":
        torch.save({"model_state": _OpensAFile(str(tmp_path / "ran"))}, path)
        return r"is a torch file of pickled Python objects \(io.open\)"
    if kind == "list":
        torch.save([torch.zeros(2)], path)
        return r"is a torch file without model weights \(it holds a list, not a dict of tensors\)"
    if kind == "no_tensors":
        torch.save({"epoch": 3, "cfg": "MODEL: {}"}, path)
        return r"is a torch file without model weights \(no tensor in it; keys: epoch, cfg\)"
    if kind == "directory":
        os.makedirs(path)
        return r"is not readable \(Is a directory\)"
    raise ValueError(kind)


KINDS = ["empty", "truncated", "truncated_legacy", "text", "random", "pickle", "whole_module", "code",
         "list", "no_tensors", "directory"]


@pytest.mark.parametrize("kind", KINDS)
def test_unusable_file_is_one_line_naming_the_file_and_what_it_is(kind, tmp_path):
    path = str(tmp_path / f"{kind}.pyth")
    expected = _write(kind, path, tmp_path)
    model = _model(1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for read in (lambda: read_checkpoint(path), lambda: load_checkpoint(path, model)):
        with pytest.raises(CheckpointFileError) as info:
            read()
        message = str(info.value)
        assert message.startswith(f"checkpoint file {path!r} ") and "\n" not in message
        assert info.value.path == path
        assert re.search(expected, message), message
        assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert isinstance(info.value, ValueError)  # like ConfigError: a problem of the input
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # nothing half-loaded
    assert not os.path.exists(tmp_path / "ran")  # the pickled open() never ran


def test_usable_formats_still_load(tmp_path):
    """The checks reject nothing usable: the legacy format, a bare state dict, GDT's nested layout."""
    model = _model()
    state = model.state_dict()
    legacy, bare, nested = (str(tmp_path / n) for n in ("legacy.pyth", "bare.pth", "gdt.pth"))
    torch.save({"epoch": 4, "model_state": state}, legacy, _use_new_zipfile_serialization=False)
    torch.save(state, bare)
    torch.save({"epoch": 9, "state_dict": {"module." + k: v for k, v in state.items()}}, nested)
    assert read_checkpoint(legacy)[2] == 4
    assert load_checkpoint(bare, _model(5)) == -1
    _, nested_state, epoch = read_checkpoint(nested)
    assert epoch == 9 and list(nested_state) == ["module." + k for k in state]
    assert load_checkpoint(nested, _model()) == 9


def test_config_key_is_named(tmp_path):
    path = str(tmp_path / "notes.txt")
    _write("text", path, tmp_path)
    with pytest.raises(CheckpointFileError) as info:
        with naming_config_key("TRAIN.CHECKPOINT_FILE_PATH"):
            read_checkpoint(path)
    assert str(info.value).startswith(f"TRAIN.CHECKPOINT_FILE_PATH {path!r} is not a torch checkpoint (a text")
    assert info.value.key == "TRAIN.CHECKPOINT_FILE_PATH"
    assert isinstance(info.value.__cause__, Exception)  # torch's own error stays in the traceback


def _three_epochs(out):
    """Checkpoints 1, 2, 3 of three different models; returns their models."""
    models = [_model(seed) for seed in (10, 20, 30)]
    for epoch, model in enumerate(models):
        save_checkpoint(out, epoch, model, None, get_cfg())
    return models


@pytest.mark.parametrize("kind", ["truncated", "empty"])
def test_resume_skips_an_unusable_newest_checkpoint_with_one_warning(kind, tmp_path, caplog):
    out = str(tmp_path / "run")
    models = _three_epochs(out)
    bad, used = checkpoint_path(out, 3), checkpoint_path(out, 2)
    _write(kind, bad, tmp_path)
    bad_bytes = open(bad, "rb").read()

    model = _model(99)
    with caplog.at_level(logging.WARNING):
        assert load_last_good_checkpoint(out, model)[:2] == (used, 1)
    assert all(torch.equal(v, models[1].state_dict()[k]) for k, v in model.state_dict().items())
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0], warnings
    assert f"checkpoint file {bad!r} " in warnings[0] and f"resuming from {used} instead" in warnings[0]
    assert "left in place (not deleted)" in warnings[0]
    assert open(bad, "rb").read() == bad_bytes  # left as it was


def test_resume_skips_several_unusable_files_and_only_file_problems(tmp_path, caplog):
    out = str(tmp_path / "run")
    models = _three_epochs(out)
    _write("empty", checkpoint_path(out, 3), tmp_path)
    _write("truncated", checkpoint_path(out, 2), tmp_path)
    model = _model(99)
    with caplog.at_level(logging.WARNING):
        assert load_last_good_checkpoint(out, model, warn=True)[:2] == (checkpoint_path(out, 1), 0)
    assert all(torch.equal(v, models[0].state_dict()[k]) for k, v in model.state_dict().items())
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert checkpoint_path(out, 3) in warning and checkpoint_path(out, 2) in warning

    # A newest file that reads but does not fit the model is a config problem: no fallback.
    save_checkpoint(out, 3, nn.Linear(2, 2), None, get_cfg())
    with pytest.raises(CheckpointMismatchError):
        load_last_good_checkpoint(out, _model())


@pytest.mark.parametrize("failure", [OSError(errno.EIO, "Input/output error"),
                                     RuntimeError("DefaultCPUAllocator: can't allocate memory")])
def test_resume_never_falls_back_past_a_file_it_failed_to_read(failure, tmp_path, monkeypatch):
    # A transient I/O error or a failed allocation says nothing about the newest file: falling back
    # would resume (each process on its own) from an older epoch.
    out = str(tmp_path / "run")
    _three_epochs(out)
    newest = checkpoint_path(out, 3)
    load = torch.load

    def failing_load(f, *args, **kwargs):
        if getattr(f, "name", "") == newest:
            raise failure
        return load(f, *args, **kwargs)

    monkeypatch.setattr(torch, "load", failing_load)
    with pytest.raises(CheckpointFileError, match="could not be read") as info:
        load_last_good_checkpoint(out, _model())
    assert info.value.path == newest and not info.value.defect


def test_resume_with_no_usable_checkpoint_names_every_file(tmp_path):
    out = str(tmp_path / "run")
    assert load_last_good_checkpoint(out, _model()) is None  # nothing to resume from
    _three_epochs(out)
    for epoch, kind in ((1, "text"), (2, "empty"), (3, "truncated")):
        _write(kind, checkpoint_path(out, epoch), tmp_path)
    with pytest.raises(CheckpointFileError) as info:
        load_last_good_checkpoint(out, _model())
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"checkpoint directory {os.path.join(out, 'checkpoints')!r} has no usable "
                              f"checkpoint to resume from: checkpoint_epoch_00003.pyth is truncated")
    assert "checkpoint_epoch_00002.pyth is empty (0 bytes)" in message
    assert "checkpoint_epoch_00001.pyth is not a torch checkpoint (a text file" in message
    assert "move them aside" in message
    assert len(os.listdir(os.path.join(out, "checkpoints"))) == 3  # nothing deleted


def _tiny(out, *opts):
    return load_config([CFG], ["OUTPUT_DIR", out, "MODEL.NUM_CLASSES", "4", "CONTRASTIVE.DIM", "16",
                               "CONTRASTIVE.MLP_DIM", "32", "STICA.SYNTHETIC.ENABLE", "False", *opts])


def test_trainer_resume_and_initialisation(tmp_path):
    out = str(tmp_path / "run")
    cfg = _tiny(out)
    model = build_model(cfg)
    for epoch in (0, 1):
        save_checkpoint(out, epoch, model, None, cfg)
    _write("truncated", checkpoint_path(out, 3), tmp_path)
    assert resume_or_initialise(cfg, build_model(cfg), None, None) == 2  # after file 2, not 3

    text = str(tmp_path / "weights.txt")
    _write("text", text, tmp_path)
    cfg = _tiny(str(tmp_path / "fresh"), "TRAIN.CHECKPOINT_FILE_PATH", text)
    with pytest.raises(CheckpointFileError, match=rf"^TRAIN.CHECKPOINT_FILE_PATH {text!r} is not a torch "
                                                  rf"checkpoint \(a text file"):
        resume_or_initialise(cfg, build_model(cfg), None, None)


@pytest.mark.parametrize("phase", ["train", "test"])
def test_run_net_prints_one_error_line_naming_the_key(phase, tmp_path, capsys):
    """tools/run_net.py's entry, in this process: a bad checkpoint path stops the run with one line."""
    path = str(tmp_path / "random.bin")
    _write("random", path, tmp_path)
    key = f"{phase.upper()}.CHECKPOINT_FILE_PATH"
    opts = ["OUTPUT_DIR", str(tmp_path / "out"), "DATA.PATH_TO_DATA_DIR", str(tmp_path), "MODEL.NUM_CLASSES",
            "4", "STICA.SYNTHETIC.ENABLE", "False", "TRAIN.ENABLE", str(phase == "train"), "TEST.ENABLE",
            str(phase == "test"), "LOG_MODEL_INFO", "False", "TENSORBOARD.ENABLE", "False", key, path]
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(["--cfg", CFG, *opts])
    assert info.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    head = open(path, "rb").read(8).hex(" ")
    assert lines == [f"error: {key} {path!r} is not a torch checkpoint (unrecognised binary content "
                     f"starting {head})"]


def test_run_net_resumes_past_a_truncated_newest_checkpoint(tmp_path, capsys):
    """A real run: epoch 1 is trained and saved; a copy cut short stands as file 2; the next run warns
    once, resumes after epoch 1, trains epoch 2 and writes a good file 2 over the bad one."""
    data = str(tmp_path / "data")
    generate_dataset(data, num_classes=4, train_per_class=2, val_per_class=1, test_per_class=1,
                     width=40, height=32, fps=15, duration=1.2, audio_rate=8000, seed=5)
    out = str(tmp_path / "out")
    opts = ["DATA.PATH_TO_DATA_DIR", data, "OUTPUT_DIR", out, "MODEL.NUM_CLASSES", "4", "TRAIN.BATCH_SIZE", "4",
            "TRAIN.CHECKPOINT_PERIOD", "1", "TEST.ENABLE", "False", "STICA.KNN.ENABLE", "False",
            "DATA_LOADER.NUM_WORKERS", "0", "LOG_MODEL_INFO", "False", "TENSORBOARD.ENABLE", "False",
            "CONTRASTIVE.DIM", "16", "CONTRASTIVE.MLP_DIM", "32", "DATA.TRAIN_JITTER_SCALES", "[20, 24]",
            "DATA.TRAIN_CROP_SIZE", "16", "SOLVER.WARMUP_EPOCHS", "0.5"]
    main(["--cfg", CFG, *opts, "SOLVER.MAX_EPOCH", "1"])
    first, second = checkpoint_path(out, 1), checkpoint_path(out, 2)
    good = open(first, "rb").read()
    open(second, "wb").write(good[: len(good) // 2])

    main(["--cfg", CFG, *opts, "SOLVER.MAX_EPOCH", "2"])
    log = open(os.path.join(out, "stdout.log")).read()
    warnings = [line for line in log.splitlines() if f"checkpoint file {second!r} is truncated" in line]
    assert len(warnings) == 1 and f"resuming from {first} instead" in warnings[0], log[-3000:]
    assert f"Resuming from {first}" in log
    assert load_checkpoint(second, build_model(_tiny(out))) == 1  # a good file 2 now
    assert open(first, "rb").read() == good
