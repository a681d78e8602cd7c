"""Tests for stica_slowfast.engine.meters, including a 2-process gloo run of TestMeter.sync."""

import math
import os

import numpy as np
import pytest
import torch

from stica_slowfast.engine.meters import (
    StepLogs,
    TestMeter,
    aggregate_views,
    topk_accuracies,
)

from gloo import run_gloo  # tests/gloo.py


def _numpy_topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    order = np.argsort(-logits, axis=1)[:, :k]
    return 100.0 * float(np.mean([labels[i] in order[i] for i in range(len(labels))]))


def test_topk_matches_numpy():
    logits = np.random.randn(50, 10).astype(np.float32)
    labels = np.random.randint(0, 10, size=50)
    got = topk_accuracies(torch.from_numpy(logits), torch.from_numpy(labels), ks=(1, 3, 5, 20))
    expected = [_numpy_topk(logits, labels, k) for k in (1, 3, 5, 10)]  # k=20 is clipped to K=10
    assert got == pytest.approx(expected)
    assert got[-1] == 100.0


def test_topk_empty_is_nan_and_shapes_checked():
    empty = topk_accuracies(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long))
    assert len(empty) == 2 and all(math.isnan(v) for v in empty)
    with pytest.raises(ValueError):
        topk_accuracies(torch.zeros(3, 4), torch.zeros(2, dtype=torch.long))


def test_aggregate_views_is_mean_softmax():
    logits = np.random.randn(4, 6, 7)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    expected = (shifted / shifted.sum(axis=-1, keepdims=True)).mean(axis=1)
    got = aggregate_views(torch.from_numpy(logits))
    assert got.shape == (4, 7)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got.sum(dim=1).numpy(), np.ones(4), rtol=1e-6)


def test_multi_view_fixes_a_wrong_single_view():
    # One video, true class 0: view 0 votes confidently for class 2, views 1 and 2 for class 0.
    logits = torch.tensor([[[0.0, 0.0, 3.0], [3.0, 0.0, 0.0], [2.5, 0.0, 0.5]]])
    label = torch.tensor([0])
    assert topk_accuracies(logits[:, 0], label, ks=(1,)) == [0.0]
    assert topk_accuracies(aggregate_views(logits), label, ks=(1,)) == [100.0]


def _scores(n, k, seed):
    return torch.randn(n, k, generator=torch.Generator().manual_seed(seed)).softmax(dim=1)


def test_test_meter_duplicates_not_double_counted():
    n, k = 6, 5
    scores = _scores(n, k, 0)
    labels = torch.randint(0, k, (n,), generator=torch.Generator().manual_seed(1))
    reference = TestMeter(n, k)
    reference.update(torch.arange(n), scores, labels)

    meter = TestMeter(n, k)
    meter.update(torch.tensor([0, 1, 2]), scores[[0, 1, 2]], labels[[0, 1, 2]])
    # Video 2 again in the next batch, video 3 twice within one batch, video 0 again (sampler padding).
    idx = torch.tensor([2, 3, 3, 4, 5, 0])
    meter.update(idx, scores[idx], labels[idx])
    assert meter.finalize() == reference.finalize()
    assert meter.finalize()["num_videos"] == n and meter.finalize()["num_skipped"] == 0

    # Golden: accuracy over the 6 distinct videos, computed directly.
    expected_top1 = 100.0 * float((scores.argmax(1) == labels).float().mean())
    assert meter.finalize()["top1_acc"] == pytest.approx(expected_top1)


def test_test_meter_ignores_invalid_samples():
    k = 4
    meter = TestMeter(5, k)
    good = torch.eye(k)[[1, 2, 3]]  # correct predictions for labels 1, 2, 3
    wrong = torch.eye(k)[[0, 0]]  # would be wrong for labels 3, 3
    meter.update(
        torch.tensor([0, 1, 2, 3, 4]),
        torch.cat([good, wrong]),
        torch.tensor([1, 2, 3, 3, 3]),
        valid=torch.tensor([True, True, True, False, False]),
    )
    result = meter.finalize()
    assert result == {"top1_acc": 100.0, "top5_acc": 100.0, "num_videos": 3, "num_skipped": 2}
    # A later valid copy of a skipped video counts.
    meter.update(torch.tensor([4]), torch.eye(k)[[3]], torch.tensor([3]), valid=torch.tensor([True]))
    assert meter.finalize()["num_videos"] == 4


def test_test_meter_rejects_bad_indices():
    meter = TestMeter(3, 2)
    with pytest.raises(IndexError):
        meter.update(torch.tensor([3]), torch.zeros(1, 2), torch.tensor([0]))
    with pytest.raises(ValueError):
        meter.update(torch.tensor([0]), torch.zeros(1, 3), torch.tensor([0]))


def test_step_logs_read_tensors_back_only_when_flushed():
    logs = StepLogs(window=3)
    assert math.isnan(logs.global_avg("loss")) and logs.keys() == []
    for value in (1.0, 10.0, 2.0, 4.0):
        # a host number and a 0-dim tensor per step, as the trainer records them
        logs.add({"loss": value, "acc": torch.tensor(value * 2)})
    assert logs.keys() == []  # nothing read back before a flush
    logs.flush()
    assert logs.keys() == ["acc", "loss"]
    assert logs.medians() == {"acc": 8.0, "loss": 4.0}  # window: 10, 2, 4
    assert logs.global_avg("loss") == pytest.approx(17.0 / 4)
    assert logs.global_avg("acc") == pytest.approx(34.0 / 4)
    logs.add({"loss": torch.tensor([6.0]), "acc": 1.0})  # one-element tensors are scalars too
    logs.flush()
    assert logs.global_avg("loss") == pytest.approx(23.0 / 5)
    with pytest.raises(ValueError):
        StepLogs(window=0)


def test_step_logs_continue_from_their_state_as_if_never_stopped():
    values = [0.1, 0.7, 1e-3, 3.3, 0.25, 5.0, 0.4]
    whole, first = StepLogs(window=3), StepLogs(window=3)
    for v in values:
        whole.add({"loss": torch.tensor(v)})
    for v in values[:4]:
        first.add({"loss": torch.tensor(v)})  # the last ones still pending on the "device"
    state = first.state()  # a mid-epoch checkpoint's copy
    second = StepLogs(window=3)
    second.load_state(state)
    for v in values[4:]:
        second.add({"loss": torch.tensor(v)})
    whole.flush(), second.flush()
    assert second.global_avg("loss") == whole.global_avg("loss")  # bit for bit
    assert second.medians() == whole.medians() and state == {"loss": [float(torch.tensor(v)) for v in values[:4]]}


# ---------------------------------------------------------------------------------------------- #
# Two processes on gloo
# ---------------------------------------------------------------------------------------------------
NUM_VIDEOS, NUM_CLASSES, WORLD = 11, 6, 2


def _dataset():
    """Per-video scores, labels and validity shared by the workers and the single-process reference."""
    scores = _scores(NUM_VIDEOS, NUM_CLASSES, 42)
    labels = torch.randint(0, NUM_CLASSES, (NUM_VIDEOS,), generator=torch.Generator().manual_seed(43))
    # Make some predictions right so that the accuracies are not trivially 0.
    scores[::2] = torch.nn.functional.one_hot(labels[::2], NUM_CLASSES).float()
    valid = torch.ones(NUM_VIDEOS, dtype=torch.bool)
    valid[[3, 8]] = False
    return scores, labels, valid


def _shard(rank: int):
    """Indices one rank sees, padded like DistributedSampler (repeat from the start, interleaved)."""
    total = math.ceil(NUM_VIDEOS / WORLD) * WORLD
    indices = list(range(NUM_VIDEOS))
    indices += indices[: total - NUM_VIDEOS]
    return indices[rank::WORLD]


def _worker(rank: int, out_dir: str) -> None:
    scores, labels, valid = _dataset()
    meter = TestMeter(NUM_VIDEOS, NUM_CLASSES)
    idx = torch.tensor(_shard(rank))
    for batch in idx.split(2):  # several small batches
        meter.update(batch, scores[batch], labels[batch], valid[batch])
    local = meter.finalize()
    meter.sync()
    meter.sync()  # idempotent
    torch.save(
        {"local": local, "synced": meter.finalize(), "scores": meter.scores},
        os.path.join(out_dir, f"rank{rank}.pt"),
    )


def test_sync_two_gloo_processes_matches_single_process(tmp_path):
    assert _shard(0)[-1] == 10 and _shard(1)[-1] == 0  # the padding duplicates video 0 on rank 1
    run_gloo(_worker, WORLD, str(tmp_path))

    scores, labels, valid = _dataset()
    reference = TestMeter(NUM_VIDEOS, NUM_CLASSES)
    reference.update(torch.arange(NUM_VIDEOS), scores, labels, valid)
    expected = reference.finalize()
    assert expected["num_videos"] == 9 and expected["num_skipped"] == 2

    results = [
        torch.load(os.path.join(tmp_path, f"rank{r}.pt"), weights_only=True) for r in range(WORLD)
    ]
    for result in results:
        assert result["synced"] == pytest.approx(expected)
        torch.testing.assert_close(result["scores"], reference.scores)
    # Before sync each rank only knew its own share.
    assert sum(r["local"]["num_videos"] for r in results) == 10  # 9 valid + the padded duplicate
