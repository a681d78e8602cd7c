"""STiCA: builds from cfg, shapes of every embedding, the loss is alpha x cross-modal + (1 - alpha) x
crop loss, the loss decreases on a fixed batch (feature and input crop spaces), and classifiers / probes
load its encoders and pooling."""

import pytest
import torch

from stica_slowfast.config import assert_and_infer_cfg, get_cfg
from stica_slowfast.checkpoint import save_checkpoint
from stica_slowfast.losses import crop_info_nce, cross_modal_info_nce
from stica_slowfast.models import build_model
from stica_slowfast.models.encoder import feature_map_tokens
from stica_slowfast.models.ssl import STiCA

B, F_BINS, TA = 4, 32, 40


def _cfg(**overrides):
    cfg = get_cfg()
    cfg.MODEL.MODEL_NAME = "STiCA"
    cfg.MODEL.ARCH = "slow_tiny"
    cfg.MODEL.NUM_CLASSES = 5
    cfg.CONTRASTIVE.DIM, cfg.CONTRASTIVE.MLP_DIM, cfg.CONTRASTIVE.NUM_MLP_LAYERS = 16, 32, 2
    cfg.STICA.AUDIO.ENABLE = True
    cfg.STICA.AUDIO.ARCH = "resnet9_audio_tiny"
    cfg.STICA.POOL.TYPE, cfg.STICA.POOL.MAX_LEN = "transformer", 4
    cfg.STICA.FEATURE_CROP.ENABLE = True
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split("__")
        for part in path:
            node = node[part]
        node[leaf] = value
    return cfg


def _batch(views=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"video": [torch.randn(B, 3, 4, 64, 64, generator=g) for _ in range(views)],
            "audio": [torch.randn(B, 1, F_BINS, TA, generator=g) for _ in range(views)]}


def test_builds_from_cfg_with_every_part():
    model = build_model(_cfg())
    assert isinstance(model, STiCA) and model.predicts_labels is False
    assert model.backbone.out_dim == 256 and model.audio_backbone.out_dim == 128
    assert type(model.video_pool).__name__ == "TransformerPooling"
    assert model.feature_crop is not None and model.crop_projector is not None
    gap = build_model(_cfg(STICA__POOL__TYPE="gap", STICA__FEATURE_CROP__ENABLE=False))
    assert type(gap.video_pool).__name__ == "GlobalAveragePooling" and gap.feature_crop is None


def test_embedding_shapes():
    model = build_model(_cfg()).eval()
    video, spec = torch.randn(B, 3, 4, 64, 64), torch.randn(B, 1, F_BINS, TA)
    with torch.no_grad():
        assert model.forward_features(video).shape == (B, 256)
        assert model.forward_audio_features(spec).shape == (B, 128)
        assert model.embed_video(video).shape == (B, 16)
        assert model.embed_audio(spec).shape == (B, 16)


def test_loss_is_the_weighted_sum_of_its_terms():
    """With crops, loss = alpha * cross-modal + (1 - alpha) * crop, each recomputed here from the
    model's own embeddings (same crop boxes: the generator state is replayed)."""
    model = build_model(_cfg(STICA__LOSS__ALPHA=0.3)).eval()  # eval: BN uses running stats, deterministic
    batch = _batch()
    torch.manual_seed(7)
    out = model.forward_train(batch)
    with torch.no_grad():
        video = torch.cat(batch["video"])
        fmap = model.backbone.forward_feature_map(video)
        z_v = model.video_projector(model.video_pool(feature_map_tokens(fmap))).reshape(2, B, -1)
        z_a = model.embed_audio(torch.cat(batch["audio"])).reshape(2, B, -1)
        xm = torch.stack([cross_modal_info_nce(z_v[v], z_a[v], temperature=0.1) for v in range(2)]).mean()
        torch.manual_seed(7)
        crops = model.feature_crop(fmap).crops  # scale -> (V*B, n, D_v, t', h', w')

        def embed(scale):  # (V*B, n, ...) -> (n*V*B, ...), crop-major -> (n, V, B, E)
            x = crops[scale].transpose(0, 1).flatten(0, 1)
            return model.crop_projector(model.video_pool(feature_map_tokens(x))).reshape(-1, 2, B, 16)

        large = torch.cat([embed("spatial_large"), embed("temporal_large")])
        small = torch.cat([embed("spatial_small"), embed("temporal_small")])
        crop = crop_info_nce(large, small, temperature=0.5)
    assert large.shape == (2 + 2, 2, B, 16) and small.shape == (4 + 1, 2, B, 16)
    torch.testing.assert_close(out["loss"].detach(), 0.3 * xm + 0.7 * crop)
    assert float(out["loss_cross_modal"]) == pytest.approx(xm.item(), rel=1e-5)
    assert float(out["loss_crop"]) == pytest.approx(crop.item(), rel=1e-5)


def test_without_crops_the_loss_is_cross_modal():
    model = build_model(_cfg(STICA__FEATURE_CROP__ENABLE=False))
    out = model.forward_train(_batch())
    assert "loss_crop" not in out and out["loss"].item() == pytest.approx(float(out["loss_cross_modal"]))


@pytest.mark.parametrize("space", ["feature", "input"])
def test_loss_decreases_on_a_fixed_batch(space):
    torch.manual_seed(0)
    model = build_model(_cfg(STICA__FEATURE_CROP__SPACE=space)).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batch, losses = _batch(), []
    for _ in range(8):
        loss = model.forward_train(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_missing_audio_is_a_clear_error():
    model = build_model(_cfg())
    with pytest.raises(KeyError, match="STICA.AUDIO.ENABLE"):
        model.forward_train({"video": _batch()["video"]})
    with pytest.raises(ValueError, match="alpha"):
        STiCA(_cfg(), alpha=1.5)


def test_probes_and_classifier_load_the_encoders(tmp_path):
    """LinearProbe takes backbone.*, AudioLinearProbe audio_backbone.*, a transformer-pooled
    VideoClassifier backbone.* and video_pool.* of a STiCA checkpoint."""
    stica = build_model(_cfg())
    path = save_checkpoint(str(tmp_path), 3, stica, None, _cfg())

    probe = build_model(_cfg(MODEL__MODEL_NAME="LinearProbe", STICA__POOL__TYPE="gap"))
    probe.load_pretrained(path)
    torch.testing.assert_close(probe.backbone.state_dict(), stica.backbone.state_dict())

    audio = build_model(_cfg(MODEL__MODEL_NAME="AudioLinearProbe", STICA__POOL__TYPE="gap"))
    audio.load_pretrained(path)
    torch.testing.assert_close(audio.backbone.state_dict(), stica.audio_backbone.state_dict())
    assert audio.input_key == "audio"
    spec = torch.randn(B, 1, F_BINS, TA)
    assert audio.eval()(spec).shape == (B, 5)
    loss = audio.forward_train({"audio": [spec], "label": torch.arange(B) % 5})["loss"]
    loss.backward()
    assert all(p.grad is None for p in audio.backbone.parameters())  # frozen

    clf = build_model(_cfg(MODEL__MODEL_NAME="VideoClassifier"))
    clf.load_pretrained(path)
    torch.testing.assert_close(clf.video_pool.state_dict(), stica.video_pool.state_dict())
    assert clf.eval()(torch.randn(B, 3, 4, 64, 64)).shape == (B, 5)


def test_stica_needs_large_crops_but_rho_byol_takes_small_ones_alone():
    """The large-crop rule is STiCA's (its crop loss contrasts large crops), not a config-wide one."""
    small_only = dict(STICA__FEATURE_CROP__NUM_LARGE_SPATIAL=0, STICA__FEATURE_CROP__NUM_LARGE_TEMPORAL=0)
    with pytest.raises(ValueError, match="NUM_LARGE_SPATIAL"):
        build_model(_cfg(**small_only))
    cfg = _cfg(**small_only)
    cfg.MODEL.MODEL_NAME = "RhoBYOL"
    assert_and_infer_cfg(cfg)  # the config itself is valid
    assert build_model(cfg).feature_crop is not None
