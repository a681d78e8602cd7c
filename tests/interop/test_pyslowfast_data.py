"""Our datasets in PySlowFast's sample format (interop/pyslowfast_data.py), read the way PySlowFast's
loaders and loops read them (default collate; ``(inputs, labels, index, time, meta)``; its TestMeter's
sum over ``index // V``), on real generated videos; no PySlowFast needed."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from stica_slowfast.config import load_config
from stica_slowfast.data import construct_loader
from stica_slowfast.data.datasets import Kinetics
from stica_slowfast.data.decoding import DecodeError
from stica_slowfast.engine.evaluator import evaluate
from stica_slowfast.interop.pyslowfast_data import pyslowfast_dataset
from stica_slowfast.models import build_model
from stica_slowfast.synthetic import generate_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NUM_CLASSES = 3
PySlowFastKinetics = pyslowfast_dataset(Kinetics)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic"))
    generate_dataset(out, num_classes=NUM_CLASSES, train_per_class=2, val_per_class=1, test_per_class=2,
                     width=40, height=32, fps=15, duration=1.2, audio_rate=8000, seed=3)
    return out


def _cfg(data_dir, *opts):
    return load_config([os.path.join(REPO, "configs", "demo", "supervised_tiny.yaml")], [
        "DATA.PATH_TO_DATA_DIR", data_dir, "MODEL.NUM_CLASSES", str(NUM_CLASSES), "MODEL.ARCH", "r2plus1d_tiny",
        "DATA.NUM_FRAMES", "4", "DATA.TRAIN_JITTER_SCALES", "[20, 24]", "DATA.TRAIN_CROP_SIZE", "16",
        "DATA.TEST_CROP_SIZE", "16", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3",
        "DATA_LOADER.NUM_WORKERS", "0", "STICA.AUG.DEVICE", "device", *opts])


def test_train_items_are_pyslowfast_tuples_that_its_loop_trains_on(data_dir):
    cfg = _cfg(data_dir)
    dataset = PySlowFastKinetics(cfg, "train")
    assert len(dataset) == dataset.num_videos == 2 * NUM_CLASSES
    inputs, labels, index, time, meta = next(iter(DataLoader(dataset, batch_size=4)))  # default collate
    assert isinstance(inputs, list) and len(inputs) == 1 and inputs[0].shape == (4, 3, 4, 16, 16)
    assert inputs[0].dtype == torch.float32  # augmented in the worker: PySlowFast's loop has no device step
    assert labels.shape == index.shape == (4,) and meta == {} and time.shape == (4, 1)
    model = build_model(cfg).train()
    loss = F.cross_entropy(model(inputs), labels)  # what PySlowFast's train_epoch computes
    loss.backward()
    assert torch.isfinite(loss)

    two_clips = _cfg(data_dir, "DATA.TRAIN_CROP_NUM_TEMPORAL", "2")
    with pytest.raises(ValueError, match="one clip per sample.*DATA.TRAIN_CROP_NUM_TEMPORAL"):
        PySlowFastKinetics(two_clips, "train")[0]


def test_pyslowfast_multi_view_test_scores_as_our_engine(data_dir):
    cfg = _cfg(data_dir)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    dataset = PySlowFastKinetics(cfg, "test")
    views = 2 * 3
    assert dataset.num_videos == 2 * NUM_CLASSES * views  # what PySlowFast's test_net divides by V
    # PySlowFast's perform_test: the model's scores (softmax, MODEL.HEAD_ACT) summed per index // V.
    sums = torch.zeros(2 * NUM_CLASSES, NUM_CLASSES)
    labels = torch.full((2 * NUM_CLASSES,), -1)
    counts = torch.zeros(2 * NUM_CLASSES, dtype=torch.long)
    with torch.no_grad():
        for inputs, label, index, _, _ in DataLoader(dataset, batch_size=4):
            scores = model(inputs)
            for k, i in enumerate(index.tolist()):
                sums[i // views] += scores[k]
                labels[i // views] = label[k]
                counts[i // views] += 1
    assert counts.tolist() == [views] * (2 * NUM_CLASSES)
    pyslowfast_top1 = 100.0 * (sums.argmax(dim=1) == labels).float().mean().item()
    ours = evaluate(model, construct_loader(cfg, "test"), cfg, torch.device("cpu"))
    assert ours["num_videos"] == 2 * NUM_CLASSES and ours["num_skipped"] == 0
    assert pyslowfast_top1 == pytest.approx(ours["top1_acc"])
    # The same views, so the same scores: PySlowFast's sum is V times our mean softmax.
    with torch.no_grad():
        for batch in construct_loader(cfg, "test"):
            from stica_slowfast.data.appearance import prepare_batch
            batch = prepare_batch(batch, torch.device("cpu"))
            mean = torch.stack([model(v).softmax(dim=1) for v in batch["video"]], dim=1).mean(dim=1)
            torch.testing.assert_close(sums[batch["index"]] / views, mean, rtol=1e-4, atol=1e-6)


def test_an_undecodable_test_video_stops_pyslowfast_test_naming_it(data_dir, tmp_path):
    with open(os.path.join(data_dir, "test.csv")) as f:
        lines = f.read().splitlines()
    (tmp_path / "test.csv").write_text("\n".join(lines + [f"{tmp_path / 'gone.mp4'} 1"]) + "\n")
    cfg = _cfg(str(tmp_path), "DATA.PATH_PREFIX", data_dir)
    dataset = PySlowFastKinetics(cfg, "test")
    dataset[0]  # a good video
    with pytest.raises(DecodeError, match=r"gone.mp4 cannot be used \(missing\); PySlowFast's test has no way"):
        dataset[len(dataset) - 1]
