"""Cross-key checks and derived values, all in one place (run once at start-up)."""

from fvcore.common.config import CfgNode

from stica_slowfast.utils.signals import signal_number

from .errors import ConfigError

#: "pytorch" (recognise it) and the layouts of stica_slowfast.checkpoint.layouts.LAYOUTS (a test keeps
#: the two equal; config stays free of torch).
CHECKPOINT_TYPES = ("pytorch", "pyslowfast_contrastive", "pyslowfast_resnet", "pyslowfast_ptvresnet", "pytorchvideo",
                    "gdt", "stica")

_CHOICES = {
    "SOLVER.LR_POLICY": ("cosine", "steps_with_relative_lrs"),
    "SOLVER.OPTIMIZING_METHOD": ("sgd", "adamw", "lars"),
    "BN.NORM_TYPE": ("batchnorm", "sync_batchnorm"),
    "MODEL.HEAD_ACT": ("softmax", "sigmoid", "none"),
    "DATA.DECODING_BACKEND": ("pyav",),
    "TRAIN.CHECKPOINT_TYPE": CHECKPOINT_TYPES,
    "TRAIN.CHECKPOINT_ENCODER": ("online", "momentum"),
    "TEST.CHECKPOINT_TYPE": CHECKPOINT_TYPES,
    "TEST.NUM_SPATIAL_CROPS": (1, 3),
    "STICA.AUDIO.FEATURE": ("log_spectrogram", "waveform"),
    "STICA.AUDIO.MISSING": ("skip", "zeros"),
    "STICA.AUG.DEVICE": ("worker", "device", "auto"),
    "STICA.POOL.TYPE": ("gap", "transformer"),
    "STICA.PROBE.BN_STATS": ("frozen", "adapt"),
    "STICA.FEATURE_CROP.SPACE": ("feature", "input"),
    "STICA.SOLVER.AMP_DTYPE": ("bfloat16", "float16"),
    "STICA.MEMORY_FORMAT": ("auto", "channels_last", "contiguous"),
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
    "STICA.BYOL.PREDICTOR_LR_MULT",
    "STICA.SOLVER.ENCODER_LR_SCALE",
    "TRAIN.CHECKPOINT_PERIOD",
    "SOLVER.MAX_EPOCH",
    "MODEL.NUM_CLASSES",
    "STICA.AUDIO.SAMPLE_RATE",
    "STICA.AUDIO.WINDOW_MS",
    "STICA.AUDIO.HOP_MS",
    "LOG_PERIOD",
    "STICA.KNN.K",
    "STICA.KNN.T",
    "STICA.POOL.DEPTH",
    "STICA.POOL.NUM_HEADS",
    "STICA.POOL.MLP_RATIO",
    "STICA.POOL.MAX_LEN",
    "STICA.LOSS.CROSS_MODAL_T",
    "STICA.LOSS.CROP_T",
)


def _get(cfg: CfgNode, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _check_audio(cfg: CfgNode) -> None:
    """``STICA.AUDIO.*``: non-negative sizes, a gain range, and a clip long enough for one window."""
    a = cfg.STICA.AUDIO
    for key in ("N_FFT", "NUM_MEL_BINS", "DURATION", "SPEC_AUGMENT.FREQ_MASK", "SPEC_AUGMENT.TIME_MASK",
                "SPEC_AUGMENT.NUM_MASKS"):
        if _get(a, key) < 0:
            raise ConfigError(f"config key STICA.AUDIO.{key} must be >= 0, got {_get(a, key)!r}")
    jitter = list(a.VOLUME_JITTER)
    if len(jitter) != 2 or not 0 < jitter[0] <= jitter[1]:
        raise ConfigError(f"config key STICA.AUDIO.VOLUME_JITTER must be [min, max] with 0 < min <= max, "
                          f"got {jitter}")
    window = int(round(a.WINDOW_MS * a.SAMPLE_RATE / 1000))
    if window < 1 or int(round(a.HOP_MS * a.SAMPLE_RATE / 1000)) < 1:
        raise ConfigError(f"config keys STICA.AUDIO.WINDOW_MS={a.WINDOW_MS} and HOP_MS={a.HOP_MS} must be "
                          f">= 1 sample at STICA.AUDIO.SAMPLE_RATE={a.SAMPLE_RATE}")
    if a.N_FFT and a.N_FFT < window:
        raise ConfigError(f"config key STICA.AUDIO.N_FFT={a.N_FFT} must be 0 or >= the window of {window} "
                          f"samples (STICA.AUDIO.WINDOW_MS={a.WINDOW_MS} at {a.SAMPLE_RATE} Hz)")
    if a.ENABLE and a.FEATURE == "log_spectrogram":
        seconds = a.DURATION or cfg.DATA.NUM_FRAMES * cfg.DATA.SAMPLING_RATE / cfg.DATA.TARGET_FPS
        if int(round(seconds * a.SAMPLE_RATE)) < window:
            raise ConfigError(f"config key STICA.AUDIO.DURATION: {seconds:g} s of audio per clip is shorter "
                              f"than one STICA.AUDIO.WINDOW_MS={a.WINDOW_MS} window")


def _check_stica_model(cfg: CfgNode) -> None:
    """``STICA.POOL``, ``STICA.FEATURE_CROP`` and ``STICA.LOSS`` ranges."""
    p, c = cfg.STICA.POOL, cfg.STICA.FEATURE_CROP
    if p.WIDTH < 0 or not 0 <= p.DROPOUT < 1:
        raise ConfigError(f"config keys STICA.POOL.WIDTH must be >= 0 and STICA.POOL.DROPOUT in [0, 1), "
                          f"got {p.WIDTH} and {p.DROPOUT}")
    for key in ("NUM_LARGE_SPATIAL", "NUM_SMALL_SPATIAL", "NUM_LARGE_TEMPORAL", "NUM_SMALL_TEMPORAL"):
        if c[key] < 0:
            raise ConfigError(f"config key STICA.FEATURE_CROP.{key} must be >= 0, got {c[key]}")
    for key in ("LARGE_SPATIAL_SIZE", "SMALL_SPATIAL_SIZE", "LARGE_TEMPORAL_SIZE", "SMALL_TEMPORAL_SIZE"):
        if not 0 < c[key] <= 1:
            raise ConfigError(f"config key STICA.FEATURE_CROP.{key} must be a fraction in (0, 1], got {c[key]}")
    if not 0 <= cfg.STICA.LOSS.ALPHA <= 1:
        raise ConfigError(f"config key STICA.LOSS.ALPHA must lie in [0, 1], got {cfg.STICA.LOSS.ALPHA}")


def _is_signal(name: str) -> bool:
    try:
        signal_number(name)
    except ValueError:
        return False
    return True


def _check_checkpoints(cfg: CfgNode) -> None:
    t = cfg.TRAIN
    if t.CHECKPOINT_ITER_PERIOD < 0 or t.CHECKPOINT_MINUTES < 0 or t.CHECKPOINT_KEEP < 1:
        raise ConfigError(f"config keys TRAIN.CHECKPOINT_ITER_PERIOD and CHECKPOINT_MINUTES must be >= 0 (0 = off) "
                          f"and CHECKPOINT_KEEP >= 1, got {t.CHECKPOINT_ITER_PERIOD}, {t.CHECKPOINT_MINUTES} and "
                          f"{t.CHECKPOINT_KEEP}")
    bad = [name for name in t.PREEMPT_SIGNALS if not isinstance(name, str) or not _is_signal(name)]
    if bad:
        raise ConfigError(f"config key TRAIN.PREEMPT_SIGNALS holds {bad}: not signals of this system "
                          f"(names such as SIGTERM, SIGUSR1)")


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
    if not 0 <= cfg.DATA_LOADER.MAX_BAD_FRACTION <= 1:
        raise ConfigError(f"config key DATA_LOADER.MAX_BAD_FRACTION must lie in [0, 1], got "
                          f"{cfg.DATA_LOADER.MAX_BAD_FRACTION!r}")
    if cfg.STICA.KNN.NUM_TRAIN < 0:
        raise ConfigError(f"config key STICA.KNN.NUM_TRAIN must be >= 0 (0 = all), got {cfg.STICA.KNN.NUM_TRAIN}")
    if not cfg.STICA.RETRIEVAL.KS or min(cfg.STICA.RETRIEVAL.KS) < 1:
        raise ConfigError(f"config key STICA.RETRIEVAL.KS must be a non-empty list of k >= 1, got {list(cfg.STICA.RETRIEVAL.KS)}")
    probe = cfg.STICA.FEATURE_PROBE
    if not probe.L2 or min(probe.L2) < 0:
        raise ConfigError(f"config key STICA.FEATURE_PROBE.L2 must be a non-empty list of lambdas >= 0, got {list(probe.L2)}")
    if not 0 < probe.HOLDOUT_FRACTION < 1 or probe.MAX_ITER < 1:
        raise ConfigError(f"config keys STICA.FEATURE_PROBE.HOLDOUT_FRACTION must lie in (0, 1) and MAX_ITER be >= 1, "
                          f"got {probe.HOLDOUT_FRACTION} and {probe.MAX_ITER}")
    triples = all(isinstance(spec, (list, tuple)) and len(spec) == 3 and all(isinstance(v, str) for v in spec)
                  for spec in probe.ALSO)
    names = [spec[0] for spec in probe.ALSO] if triples else []
    if not triples or not all(names) or len(set(names)) != len(names):
        raise ConfigError(f"config key STICA.FEATURE_PROBE.ALSO must be a list of [NAME, CHECKPOINT, ARCH] string "
                          f"triples with distinct non-empty names, got {list(probe.ALSO)}")
    _check_audio(cfg)
    _check_stica_model(cfg)
    _check_checkpoints(cfg)
    return cfg
