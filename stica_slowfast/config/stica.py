"""Keys PySlowFast does not have: all under ``STICA.*``, except ``DATA_LOADER.NUM_RETRIES``.

:func:`add_stica_config` extends any CfgNode, including one built by PySlowFast's ``get_cfg()``,
without touching the keys already there.
"""

from fvcore.common.config import CfgNode


def add_audio_config(stica: CfgNode) -> None:
    stica.AUDIO = CfgNode()
    # Return the clip's audio with each clip (mono waveform aligned to the clip's time span).
    stica.AUDIO.ENABLE = False
    # Audio sample rate in Hz the waveform is resampled to (PyAV / libswresample).
    stica.AUDIO.SAMPLE_RATE = 16000


def add_data_config(stica: CfgNode) -> None:
    stica.DATA = CfgNode()
    # Official split number (1, 2 or 3) for the "ucf101" and "hmdb51" datasets.
    stica.DATA.SPLIT = 1


def add_solver_config(stica: CfgNode) -> None:
    stica.SOLVER = CfgNode()
    # SOLVER.BASE_LR is the LR of a global batch of this many clips and is scaled linearly to the
    # actual TRAIN.BATCH_SIZE (Goyal et al. 2017); 0 uses SOLVER.BASE_LR as given (PySlowFast).
    stica.SOLVER.REFERENCE_BATCH_SIZE = 0
    # Trust coefficient eta of LARS (SOLVER.OPTIMIZING_METHOD "lars"; You et al. 2017, arXiv:1708.03888),
    # a float > 0: each adapted tensor's LR is multiplied by eta * ||w|| / (||g|| + wd * ||w||).
    stica.SOLVER.LARS_ETA = 0.001


def add_synthetic_config(stica: CfgNode) -> None:
    stica.SYNTHETIC = CfgNode()
    # Generate the synthetic audio-visual dataset (stica_slowfast.data.synthetic) into
    # OUTPUT_DIR/synthetic_data when DATA.PATH_TO_DATA_DIR is empty (the demo configs). The class
    # count is MODEL.NUM_CLASSES (1 to 120: each class needs its own shape x trajectory and tone).
    stica.SYNTHETIC.ENABLE = False
    # Videos per class in each split (integers >= 0): train.csv + trainlist01.txt, val.csv,
    # test.csv + testlist01.txt.
    stica.SYNTHETIC.TRAIN_PER_CLASS = 24
    stica.SYNTHETIC.VAL_PER_CLASS = 4
    stica.SYNTHETIC.TEST_PER_CLASS = 6
    # Frame width and height in pixels (even, >= 16).
    stica.SYNTHETIC.WIDTH = 96
    stica.SYNTHETIC.HEIGHT = 80
    # Frame rate in frames/s (> 0; fractional rates such as 29.97 are allowed).
    stica.SYNTHETIC.FPS = 25
    # Length of each video in seconds (> 0, at least 2 frames).
    stica.SYNTHETIC.DURATION = 3.0
    # Audio sample rate of the generated files in Hz (an AAC rate >= 8000: 16000, 22050, 44100...).
    stica.SYNTHETIC.AUDIO_RATE = 22050
    # Seed of the generator (integer >= 0; the same seed writes the same dataset).
    stica.SYNTHETIC.SEED = 0
    # Processes encoding videos in parallel (0 = one per CPU core); does not change the content.
    stica.SYNTHETIC.WORKERS = 1


def add_ssl_aug_config(stica: CfgNode) -> None:
    """Probabilities of the per-clip SSL augmentation (switched on by ``DATA.SSL_COLOR_JITTER``);
    PySlowFast hard-codes them, so they have no PySlowFast key."""
    stica.SSL_AUG = CfgNode()
    # Probability in [0, 1] that a clip gets colour jitter (DATA.SSL_COLOR_BRI_CON_SAT, SSL_COLOR_HUE).
    stica.SSL_AUG.COLOR_JITTER_PROB = 0.8
    # Probability in [0, 1] that a clip is Gaussian-blurred (sigmas: DATA.SSL_BLUR_SIGMA_MIN / MAX).
    stica.SSL_AUG.BLUR_PROB = 0.5


def add_swav_config(stica: CfgNode) -> None:
    """RhoSwAV keys PySlowFast has no name for (it hard-codes them)."""
    stica.SWAV = CfgNode()
    # Number of prototypes K (integer >= 1).
    stica.SWAV.NUM_PROTOTYPES = 1000
    # Entropic regularisation epsilon (> 0) of Sinkhorn-Knopp; smaller gives sharper codes.
    stica.SWAV.EPSILON = 0.05
    # Sinkhorn-Knopp iterations (integer >= 1).
    stica.SWAV.SINKHORN_ITERS = 3
    # Optimisation steps (integer >= 0) during which the prototypes' gradient is zeroed (SwAV's
    # freeze_prototypes_niters); 0 = never frozen.
    stica.SWAV.FREEZE_PROTOTYPES_ITERS = 313


def add_eval_config(stica: CfgNode) -> None:
    stica.KNN = CfgNode()
    # kNN monitor (stica_slowfast.engine.retrieval): every TRAIN.EVAL_PERIOD epochs, the val videos are
    # classified by a weighted kNN over the features of labelled train videos (json_stats "knn_val");
    # at the end of training the test videos too (metrics.json "knn_top1_acc"). Any model with
    # forward_features; one centred clip per video.
    stica.KNN.ENABLE = False
    # Neighbours per query (integer >= 1; clipped to the bank size).
    stica.KNN.K = 200
    # Temperature T > 0 of the neighbour weights exp(cosine / T).
    stica.KNN.T = 0.07
    # Train videos in the memory bank: a fixed random subset of this many (integer >= 0; 0 = all).
    stica.KNN.NUM_TRAIN = 0
    stica.RETRIEVAL = CfgNode()
    # Retrieval run mode: after training/testing, every test video queries the train videos by cosine
    # similarity of its mean feature over the test views; R@k into metrics.json.
    stica.RETRIEVAL.ENABLE = False
    # The k of the reported recalls R@k (integers >= 1).
    stica.RETRIEVAL.KS = [1, 5, 10]
    stica.PROBE = CfgNode()
    # LinearProbe: standardise each frozen feature with a BatchNorm without affine parameters before
    # the linear layer (as MAE, arXiv:2111.06377), so the probe does not depend on feature scale. At
    # inference it is a fixed affine map, so the classifier stays linear in the features.
    stica.PROBE.FEATURE_NORM = True


def add_data_loader_config(cfg: CfgNode) -> None:
    """``DATA_LOADER.NUM_RETRIES`` keeps PySlowFast's naming but PySlowFast's config lacks it."""
    if "DATA_LOADER" not in cfg:
        cfg.DATA_LOADER = CfgNode()
    if "NUM_RETRIES" not in cfg.DATA_LOADER:
        # Undecodable videos tried in a row (in training each is replaced by another random video)
        # before the loader gives up with an error.
        cfg.DATA_LOADER.NUM_RETRIES = 10


def add_stica_config(cfg: CfgNode) -> CfgNode:
    """Add the ``STICA.*`` subtree (and ``DATA_LOADER.NUM_RETRIES`` where missing) to ``cfg``, in
    place, and return it. Keys already in ``cfg`` are left as they are."""
    add_data_loader_config(cfg)
    cfg.STICA = CfgNode()
    add_audio_config(cfg.STICA)
    add_data_config(cfg.STICA)
    add_solver_config(cfg.STICA)
    add_synthetic_config(cfg.STICA)
    add_ssl_aug_config(cfg.STICA)
    add_swav_config(cfg.STICA)
    add_eval_config(cfg.STICA)
    return cfg
