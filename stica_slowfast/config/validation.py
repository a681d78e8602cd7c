"""Cross-key checks and derived values, all in one place (run once at start-up)."""

from fvcore.common.config import CfgNode

from .loading import ConfigError

_CHOICES = {
    "SOLVER.LR_POLICY": ("cosine", "steps_with_relative_lrs"),
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adamw", "lars"),
    "BN.NORM_TYPE": ("batchnorm", "sync_batchnorm"),
    "DATA.DECODING_BACKEND": ("pyav",),
    "TRAIN.CHECKPOINT_TYPE": ("pytorch",),
    "TEST.CHECKPOINT_TYPE": ("pytorch",),
    "TEST.NUM_SPATIAL_CROPS": (1, 3),
}

_POSITIVE = (
    "TRAIN.BATCH_SIZE",
    "TEST.BATCH_SIZE",
    "NUM_SHARDS",
    "DATA.NUM_FRAMES",
    "DATA.SAMPLING_RATE",
    "DATA.TARGET_FPS",
    "DATA.TRAIN_CROP_SIZE",
    "DATA.TEST_CROP_SIZE",
    "DATA.TRAIN_CROP_NUM_TEMPORAL",
    "DATA.TRAIN_CROP_NUM_SPATIAL",
    "TEST.NUM_ENSEMBLE_VIEWS",
    "TRAIN.EVAL_PERIOD",
    "TRAIN.CHECKPOINT_PERIOD",
    "SOLVER.MAX_EPOCH",
    "MODEL.NUM_CLASSES",
    "STICA.AUDIO.SAMPLE_RATE",
    "LOG_PERIOD",
    "STICA.KNN.K",
    "STICA.KNN.T",
)


def _get(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def world_size_from_cfg(cfg: CfgNode) -> int:
    """Processes of the job as configured: one per GPU (or one per shard on CPU), on every shard."""
    return cfg.NUM_SHARDS * max(1, cfg.NUM_GPUS)


def assert_and_infer_cfg(cfg: CfgNode) -> CfgNode:
    """Validate cross-key constraints of ``cfg`` (in place); raise ConfigError naming the key."""
    for key, choices in _CHOICES.items():
        if _get(cfg, key) not in choices:
            raise ConfigError(f"config key {key} must be one of {list(choices)}, got {_get(cfg, key)!r}")
    for key in _POSITIVE:
        if _get(cfg, key) <= 0:
            raise ConfigError(f"config key {key} must be positive, got {_get(cfg, key)!r}")
    if cfg.NUM_GPUS < 0:
        raise ConfigError(f"config key NUM_GPUS must be >= 0, got {cfg.NUM_GPUS}")
    if not 0 <= cfg.SHARD_ID < cfg.NUM_SHARDS:
        raise ConfigError(f"config key SHARD_ID must lie in [0, NUM_SHARDS={cfg.NUM_SHARDS}), got {cfg.SHARD_ID}")
    world = world_size_from_cfg(cfg)
    for key in ("TRAIN.BATCH_SIZE", "TEST.BATCH_SIZE"):
        if _get(cfg, key) % world:
            raise ConfigError(
                f"config key {key}={_get(cfg, key)} is the global batch and must be divisible by the "
                f"{world} processes (NUM_SHARDS x max(1, NUM_GPUS))"
            )
    if cfg.SOLVER.LR_POLICY == "steps_with_relative_lrs" and (
        not cfg.SOLVER.STEPS or len(cfg.SOLVER.STEPS) != len(cfg.SOLVER.LRS)
    ):
        raise ConfigError("config keys SOLVER.STEPS and SOLVER.LRS must be non-empty and of equal length")
    if len(cfg.DATA.MEAN) != cfg.DATA.INPUT_CHANNEL_NUM[0] or len(cfg.DATA.STD) != len(cfg.DATA.MEAN):
        raise ConfigError("config keys DATA.MEAN and DATA.STD need one value per input channel")
    for key in ("DATA.TRAIN_JITTER_SCALES", "DATA.TRAIN_JITTER_SCALES_RELATIVE", "DATA.TRAIN_JITTER_ASPECT_RELATIVE"):
        value = _get(cfg, key)
        if value and (len(value) != 2 or value[0] > value[1]):
            raise ConfigError(f"config key {key} must be [min, max], got {list(value)}")
    if cfg.STICA.KNN.NUM_TRAIN < 0:
        raise ConfigError(f"config key STICA.KNN.NUM_TRAIN must be >= 0 (0 = all), got {cfg.STICA.KNN.NUM_TRAIN}")
    if not cfg.STICA.RETRIEVAL.KS or min(cfg.STICA.RETRIEVAL.KS) < 1:
        raise ConfigError(f"config key STICA.RETRIEVAL.KS must be a non-empty list of k >= 1, got {list(cfg.STICA.RETRIEVAL.KS)}")
    return cfg
