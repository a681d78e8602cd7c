"""Keys PySlowFast does not have: all under ``STICA.*``, except ``DATA_LOADER.NUM_RETRIES`` and
``DATA_LOADER.MAX_BAD_FRACTION``.

:func:`add_stica_config` extends any CfgNode, including one built by PySlowFast's ``get_cfg()``,
without touching the keys already there.
"""

from fvcore.common.config import CfgNode


def add_audio_config(stica: CfgNode) -> None:
    """Audio of each clip and its front-end (stica_slowfast.data.audio); STiCA's paper settings:
    24 kHz, 20 ms windows every 10 ms, 257 frequency bins, 1 s of audio for 30 frames."""
    stica.AUDIO = CfgNode()
    # Return the clip's audio with each clip, as "audio" (one entry per view, shared by the spatial
    # views of one clip).
    stica.AUDIO.ENABLE = False
    # Audio sample rate in Hz the waveform is resampled to (PyAV / libswresample); an integer > 0.
    stica.AUDIO.SAMPLE_RATE = 24000
    # What a clip's audio is: "log_spectrogram" -- float32 (1, F, Ta); "waveform" -- the mono
    # waveform (S,) unchanged (no normalisation or augmentation).
    stica.AUDIO.FEATURE = "log_spectrogram"
    # Hann window length in milliseconds (> 0; 20 ms = 480 samples at 24 kHz).
    stica.AUDIO.WINDOW_MS = 20.0
    # Time between spectrogram frames in milliseconds (> 0). Ta = 1 + (S - window) // hop frames
    # (99 for 1 s at 24 kHz with 20 ms / 10 ms).
    stica.AUDIO.HOP_MS = 10.0
    # FFT size in samples: 0 = the next power of two >= the window (512 at 24 kHz, 20 ms, giving 257
    # linear bins); otherwise an integer >= the window length in samples.
    stica.AUDIO.N_FFT = 0
    # Mel bins F (integer >= 0; HTK mel scale, 0 Hz to SAMPLE_RATE / 2); 0 = the N_FFT // 2 + 1 linear
    # bins. (The upstream code's "257 filterbank bins" are 257 mel filters with N_FFT 1024.)
    stica.AUDIO.NUM_MEL_BINS = 0
    # Seconds of audio per clip (>= 0), centred on the video clip's centre and zero-padded where it
    # runs past either end of the file; 0 = exactly the clip's time span. The paper uses 1 s for
    # 30 frames and 2 s for 60 frames at 30 fps.
    stica.AUDIO.DURATION = 0.0
    # Standardise each spectrogram to zero mean and unit std over all its cells.
    stica.AUDIO.NORMALIZE = True
    # Volume jitter, train sampling only: the waveform is multiplied by a gain drawn uniformly in
    # [min, max] (0 < min <= max); [1.0, 1.0] = off; the paper uses [0.9, 1.1]. A gain shifts the
    # log spectrogram by a constant, so with NORMALIZE it only changes how far quiet parts sit above
    # the log(eps) floor.
    stica.AUDIO.VOLUME_JITTER = [1.0, 1.0]
    stica.AUDIO.SPEC_AUGMENT = CfgNode()
    # SpecAugment frequency and time masking (Park et al. 2019, arXiv:1904.08779; no time warping),
    # train sampling only, after the standardisation; masked cells get the spectrogram's mean.
    stica.AUDIO.SPEC_AUGMENT.ENABLE = False
    # Largest frequency mask width in bins (integer >= 0); each width is uniform in [0, FREQ_MASK].
    stica.AUDIO.SPEC_AUGMENT.FREQ_MASK = 27
    # Largest time mask width in frames (integer >= 0); each width is uniform in [0, TIME_MASK].
    stica.AUDIO.SPEC_AUGMENT.TIME_MASK = 20
    # Masks of each kind (frequency and time) per spectrogram (integer >= 0).
    stica.AUDIO.SPEC_AUGMENT.NUM_MASKS = 1
    # A video without an audio stream (with ENABLE): "skip" -- treated like an undecodable video (in
    # training replaced by another random video and counted in "skipped"; an evaluated video is
    # marked invalid); "zeros" -- silent audio is used.
    stica.AUDIO.MISSING = "skip"
    # Audio encoder (BACKBONE registry name) of audio-visual models (STiCA) and AudioLinearProbe:
    # "resnet9_audio" (4.9 M parameters, out_dim 512) or "resnet9_audio_tiny" (0.31 M, out_dim 128).
    stica.AUDIO.ARCH = "resnet9_audio"


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
    # LR multiplier (> 0) of a fine-tuned VideoClassifier's pretrained encoder (backbone and temporal
    # pooling) relative to its new head: 1.0 trains all at one LR; GDT's / STiCA's fine-tuning uses 0.1.
    stica.SOLVER.ENCODER_LR_SCALE = 1.0
    # Precision of TRAIN.MIXED_PRECISION on CUDA: "bfloat16" (no loss scaling needed; Ampere and newer)
    # or "float16" (with a GradScaler, as PySlowFast). CPU autocast is always bfloat16.
    stica.SOLVER.AMP_DTYPE = "bfloat16"


def add_synthetic_config(stica: CfgNode) -> None:
    stica.SYNTHETIC = CfgNode()
    # Generate the synthetic audio-visual dataset (stica_slowfast.synthetic) into
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


def add_aug_config(stica: CfgNode) -> None:
    """Where the per-clip appearance augmentation runs (stica_slowfast.data.appearance)."""
    stica.AUG = CfgNode()
    # Where flip, colour jitter, grayscale, blur and normalisation are applied; the data-loader worker
    # always crops and draws their parameters (from the sample's seed), so a sample is the same either
    # way. "worker": in the worker, one clip at a time, as float. "device": the worker returns uint8
    # crops and the training device applies the parameters to the whole batch (a quarter of the bytes
    # to copy and pin; batched float work). "auto": "device" when training on GPUs, "worker" on CPU.
    stica.AUG.DEVICE = "auto"


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


def add_byol_config(stica: CfgNode) -> None:
    """RhoBYOL keys PySlowFast has no name for."""
    stica.BYOL = CfgNode()
    # LR multiplier (> 0) of the predictor relative to the rest of the model. A predictor that adapts
    # faster than the encoder keeps BYOL's features from collapsing onto a few directions (Tian et
    # al., "Understanding self-supervised learning dynamics without contrastive pairs", arXiv
    # 2102.06810; SimSiam, arXiv 2011.10566, keeps the predictor's LR fixed for the same reason).
    stica.BYOL.PREDICTOR_LR_MULT = 1.0


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
    # BatchNorm statistics of the frozen encoder while the probe trains: "frozen" (eval mode: the
    # checkpoint's statistics) or "adapt" (train mode: batch statistics, running ones re-estimated on this
    # dataset, as PySlowFast's released linear configs do with MODEL.DETACH_FINAL_FC and no FROZEN_BN).
    stica.PROBE.BN_STATS = "frozen"


def add_feature_probe_config(stica: CfgNode) -> None:
    """The convex linear probe on extracted features (``stica_slowfast/engine/feature_probe.py``)."""
    stica.FEATURE_PROBE = CfgNode()
    # Run mode (after training / testing, if enabled): features of the train and test videos from the
    # backbone of TRAIN.CHECKPOINT_FILE_PATH (random init when empty), test views of each video, then a
    # logistic regression fitted by L-BFGS; figures in metrics.json as feature_probe_*.
    stica.FEATURE_PROBE.ENABLE = False
    # Candidate L2 weights lambda (on standardised features) of the logistic regression; the best on
    # held-out train videos is refitted on all of them. One value: no selection.
    stica.FEATURE_PROBE.L2 = [0.0001, 0.001, 0.01, 0.1, 1.0]
    # Share of each class's train videos held out to choose lambda, in (0, 1).
    stica.FEATURE_PROBE.HOLDOUT_FRACTION = 0.2
    # L-BFGS iterations per fit, at most (integer >= 1).
    stica.FEATURE_PROBE.MAX_ITER = 500
    # More encoders probed in the same pass over the videos (each video is decoded once for all), as
    # [NAME, CHECKPOINT, ARCH] lists: CHECKPOINT "" is a random initialisation (the one a run of its own
    # would draw), ARCH "" is MODEL.ARCH (e.g. "colour_stats" for the colour-only baseline). Their
    # figures go into metrics.json's feature_probe_also, under their names.
    stica.FEATURE_PROBE.ALSO = []


def add_pool_config(stica: CfgNode) -> None:
    """Temporal pooling of a backbone's per-time-step features (STiCA's "attend")."""
    stica.POOL = CfgNode()
    # Pooling over time (one of "gap", "transformer"): "gap" is the global average pool (the backbone's
    # own); "transformer" a transformer over the time tokens (spatially averaged feature map) read out
    # from a CLS token. Used by STiCA for video and audio, and by VideoClassifier / LinearProbe (a
    # fine-tuned STiCA encoder keeps its pooling). The keys below apply to "transformer" only.
    stica.POOL.TYPE = "gap"
    # Transformer width in channels (integer >= 0; 0 = the backbone's channels, no input projection).
    stica.POOL.WIDTH = 0
    # Transformer encoder layers (integer >= 1).
    stica.POOL.DEPTH = 1
    # Attention heads (integer >= 1, dividing the width).
    stica.POOL.NUM_HEADS = 4
    # Hidden width of each layer's MLP as a multiple of the width (a float > 0).
    stica.POOL.MLP_RATIO = 4.0
    # Dropout probability in [0, 1) after the positional embedding and inside every layer.
    stica.POOL.DROPOUT = 0.0
    # Learned positional embeddings, one per time step of the feature map (integer >= 1); another
    # number of time steps (temporal crops, a longer test clip) interpolates them linearly.
    stica.POOL.MAX_LEN = 16
    # Start the transformer pooling as a global average pool (True or False): True adds its CLS readout
    # to the tokens' mean through a zero-initialised linear layer; False reads out the CLS token alone.
    stica.POOL.GAP_INIT = True


def add_feature_crop_config(stica: CfgNode) -> None:
    """Feature Crop: crops of the backbone's last feature map (STiCA's cheap multi-crop)."""
    stica.FEATURE_CROP = CfgNode()
    # Take crops of every view (True or False): the crop InfoNCE is added to the loss (STiCA), or the
    # crops are extra BYOL views (RhoBYOL).
    stica.FEATURE_CROP.ENABLE = False
    # Where crops are taken (one of "feature", "input"): "feature" crops the last feature map (one
    # backbone pass); "input" crops the input clip at the same fractions and encodes every crop (the
    # costly multi-crop, for comparison: tools/benchmark.py crops).
    stica.FEATURE_CROP.SPACE = "feature"
    # Crops per view (integers >= 0): large / small spatial crops (all time steps, part of the frame) ...
    stica.FEATURE_CROP.NUM_LARGE_SPATIAL = 2
    stica.FEATURE_CROP.NUM_SMALL_SPATIAL = 4
    # ... and large / small temporal crops (the whole frame, part of the time steps).
    stica.FEATURE_CROP.NUM_LARGE_TEMPORAL = 2
    stica.FEATURE_CROP.NUM_SMALL_TEMPORAL = 1
    # Side of a large / small spatial crop as a fraction of the feature map's height and width, in (0, 1].
    stica.FEATURE_CROP.LARGE_SPATIAL_SIZE = 0.6
    stica.FEATURE_CROP.SMALL_SPATIAL_SIZE = 0.3
    # Length of a large / small temporal crop as a fraction of the feature map's time steps, in (0, 1].
    stica.FEATURE_CROP.LARGE_TEMPORAL_SIZE = 0.6
    stica.FEATURE_CROP.SMALL_TEMPORAL_SIZE = 0.3
    # Round crop sizes to whole feature-map cells (True or False): True crops exact slices; False keeps
    # fraction x size and resamples non-integral boxes with roi_align.
    stica.FEATURE_CROP.SNAP_TO_GRID = True


def add_stica_loss_config(stica: CfgNode) -> None:
    """The STiCA objective: ALPHA x cross-modal InfoNCE + (1 - ALPHA) x crop InfoNCE."""
    stica.LOSS = CfgNode()
    # Weight in [0, 1] of the cross-modal (video <-> audio) term.
    stica.LOSS.ALPHA = 0.5
    # Temperature (> 0) of the cross-modal InfoNCE.
    stica.LOSS.CROSS_MODAL_T = 0.1
    # Temperature (> 0) of the within-video crop InfoNCE.
    stica.LOSS.CROP_T = 0.5


def add_data_loader_config(cfg: CfgNode) -> None:
    """``DATA_LOADER.NUM_RETRIES`` keeps PySlowFast's naming but PySlowFast's config lacks it;
    ``DATA_LOADER.MAX_BAD_FRACTION`` is new (stica_slowfast.data.bad_input)."""
    if "DATA_LOADER" not in cfg:
        cfg.DATA_LOADER = CfgNode()
    if "NUM_RETRIES" not in cfg.DATA_LOADER:
        # Undecodable videos tried in a row (in training each is replaced by another random video)
        # before the loader gives up with an error.
        cfg.DATA_LOADER.NUM_RETRIES = 10
    if "MAX_BAD_FRACTION" not in cfg.DATA_LOADER:
        # Largest fraction in [0, 1] of bad input a run accepts: videos skipped (missing, empty,
        # truncated, undecodable, no video, no audio with STICA.AUDIO.MISSING "skip") and split-file
        # lines that cannot be read, among all videos read in a training epoch (checked at its end,
        # over all processes), and bad lines among a split file's lines (checked when it is loaded).
        # More stops the run with an error giving the counts per reason. 0 = no bad input at all;
        # 1 = never stop. Evaluation only counts (json_stats / metrics.json "skipped_<reason>").
        cfg.DATA_LOADER.MAX_BAD_FRACTION = 0.05


def add_stica_config(cfg: CfgNode) -> CfgNode:
    """Add the ``STICA.*`` subtree (and ``DATA_LOADER.NUM_RETRIES`` / ``MAX_BAD_FRACTION`` where
    missing) to ``cfg``, in place, and return it. Keys already in ``cfg`` are left as they are."""
    add_data_loader_config(cfg)
    cfg.STICA = CfgNode()
    add_audio_config(cfg.STICA)
    add_data_config(cfg.STICA)
    add_solver_config(cfg.STICA)
    add_synthetic_config(cfg.STICA)
    add_ssl_aug_config(cfg.STICA)
    add_aug_config(cfg.STICA)
    add_swav_config(cfg.STICA)
    add_byol_config(cfg.STICA)
    add_eval_config(cfg.STICA)
    add_feature_probe_config(cfg.STICA)
    add_pool_config(cfg.STICA)
    add_feature_crop_config(cfg.STICA)
    add_stica_loss_config(cfg.STICA)
    # Memory layout of the convolution weights, and so of the activations they produce (the same weights
    # and checkpoints; sums run in another order, so a trained run differs by rounding):
    # "channels_last" (NDHWC / NHWC), "contiguous" (NCDHW / NCHW), or "auto": channels-last
    # on the CPU, where oneDNN's kernels for it are faster (tools/benchmark.py memory_format), and on
    # CUDA with TRAIN.MIXED_PRECISION (the layout of cuDNN's tensor-core kernels); contiguous otherwise.
    cfg.STICA.MEMORY_FORMAT = "auto"
    return cfg
