"""kNN classification, retrieval recall and feature extraction against brute-force references."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stica_slowfast.engine.retrieval import (bank_subset, encoder_of, extract_features, extract_features_each,
                                             knn_scores, recall_at_k)
from stica_slowfast.models.api import ModelBase


def _unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1)


def _np_knn(q, bank, labels, num_classes, k, t):
    """Loop reference: each query sums exp(cos / t) over its k most similar bank rows, per class."""
    out = np.zeros((len(q), num_classes))
    for i, row in enumerate(q):
        sims = bank @ row
        for j in np.argsort(-sims, kind="stable")[:k]:
            out[i, labels[j]] += np.exp(sims[j] / t)
    return out


@pytest.mark.parametrize("k", [1, 5, 50])
def test_knn_scores_match_loop_reference(k):
    q, bank = _unit(7, 16, 0), _unit(30, 16, 1)
    labels = torch.arange(30) % 4
    got = knn_scores(q, bank, labels, num_classes=4, k=k, temperature=0.1)
    want = _np_knn(q.double().numpy(), bank.double().numpy(), labels.numpy(), 4, min(k, 30), 0.1)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-4)


def test_knn_finds_the_class_of_a_perturbed_bank_row():
    bank = _unit(40, 8, 2)
    labels = torch.arange(40) % 5
    queries = F.normalize(bank[[3, 17, 22]] + 0.01 * _unit(3, 8, 3), dim=1)
    scores = knn_scores(queries, bank, labels, num_classes=5, k=1)
    assert scores.argmax(dim=1).tolist() == labels[[3, 17, 22]].tolist()


def test_knn_argument_checks():
    with pytest.raises(ValueError, match="empty"):
        knn_scores(_unit(2, 4, 0), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="temperature"):
        knn_scores(_unit(2, 4, 0), _unit(3, 4, 1), torch.zeros(3, dtype=torch.long), 3, temperature=0.0)


def _circle(angles):
    angles = torch.tensor(angles)
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def test_recall_at_k_by_hand():
    # Unit vectors at these angles: the neighbours of a query are the nearest angles.
    bank, bank_labels = _circle([0.0, 0.3, 1.5, 1.6, 3.0]), torch.tensor([0, 1, 2, 2, 0])
    # Query at 0.25 (class 1): nearest 0.3, class 1, a hit at k = 1. Query at 1.52 (class 0): order
    # 1.5, 1.6, 0.3, 3.0, 0.0, classes 2, 2, 1, 0, 0: the first hit at k = 4.
    got = recall_at_k(_circle([0.25, 1.52]), torch.tensor([1, 0]), bank, bank_labels, ks=(1, 3, 4, 10))
    assert got == {"R@1": 50.0, "R@3": 50.0, "R@4": 100.0, "R@10": 100.0}
    assert recall_at_k(bank, bank_labels, bank, bank_labels, ks=(1,)) == {"R@1": 100.0}  # itself first


def test_recall_matches_brute_force():
    q, bank = _unit(25, 6, 4), _unit(60, 6, 5)
    ql, bl = torch.arange(25) % 3, torch.arange(60) % 3
    got = recall_at_k(q, ql, bank, bl, ks=(1, 5, 10))
    order = np.argsort(-(q @ bank.T).numpy(), axis=1, kind="stable")
    for k in (1, 5, 10):
        want = np.mean([(bl.numpy()[order[i, :k]] == ql.numpy()[i]).any() for i in range(25)]) * 100
        assert got[f"R@{k}"] == pytest.approx(want)


class _MeanColour(ModelBase):
    """Feature = per-channel mean of the clip: lets a test predict the extracted rows exactly."""

    def forward_features(self, video):
        return video.mean(dim=(2, 3, 4))

    def forward_train(self, batch):
        return {"loss": self.forward_features(batch["video"][0]).sum()}


def _batch(index, valid, views=2):
    index = torch.tensor(index)
    video = [torch.rand(len(index), 3, 2, 4, 4) + index.view(-1, 1, 1, 1, 1) for _ in range(views)]
    return {"video": video, "label": index % 2, "index": index, "valid": torch.tensor(valid)}


def test_extract_features_averages_views_drops_invalid_and_duplicates():
    batches = [_batch([2, 0], [True, True]), _batch([1, 3], [False, True]), _batch([0], [True])]
    model = _MeanColour().train()
    feats = extract_features(model, batches, torch.device("cpu"))
    assert model.training  # mode restored
    assert feats.index.tolist() == [0, 2, 3] and feats.labels.tolist() == [0, 0, 1]
    assert torch.allclose(feats.features.norm(dim=1), torch.ones(3))
    first = batches[0]
    want = torch.stack([v[1] for v in first["video"]]).mean(dim=(0, 2, 3, 4))  # video 0's two views
    torch.testing.assert_close(feats.features[0], F.normalize(want, dim=0))


def test_one_pass_for_several_encoders_gives_what_a_pass_each_gives():
    batches = [_batch([2, 0], [True, True]), _batch([1, 3], [False, True])]
    for batch in batches:
        batch["audio"] = [v[:, :1].flatten(2) for v in batch["video"]]  # (B, 1, T*H*W)
    colour, other = _MeanColour().train(), _MeanColour().eval()
    reads = []

    class Counted(list):
        def __iter__(self):
            reads.append(1)
            return super().__iter__()

    both = extract_features_each({"video": encoder_of(colour), "audio": encoder_of(other, lambda a: a.mean(dim=2), "audio")},
                                 Counted(batches), torch.device("cpu"), keep_views=True)
    assert len(reads) == 1 and colour.training and not other.training  # one pass; modes restored
    alone = [extract_features(colour, batches, torch.device("cpu"), keep_views=True),
             extract_features(other, batches, torch.device("cpu"), encode=lambda a: a.mean(dim=2), key="audio",
                              keep_views=True)]
    for feats, want in zip((both["video"], both["audio"]), alone):
        assert feats.index.tolist() == want.index.tolist() == [0, 2, 3]
        torch.testing.assert_close(feats.features, want.features)
    assert both["audio"].features.shape == (3, 2, 1)


def test_bank_subset_is_fixed_and_sorted():
    assert bank_subset(10, 0, seed=1) is None and bank_subset(10, 10, seed=1) is None
    sub = bank_subset(100, 12, seed=1)
    assert sub == bank_subset(100, 12, seed=1) and sub == sorted(set(sub)) and len(sub) == 12
