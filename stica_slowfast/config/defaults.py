"""Default config. Key names follow PySlowFast's ``slowfast/config/defaults.py`` wherever the meaning is
the same; keys PySlowFast does not have live under ``STICA.*`` (see :mod:`.stica`), so that
:func:`add_stica_config` can extend a config built by PySlowFast itself.

Every default has a comment stating its unit and allowed values.
"""

from fvcore.common.config import CfgNode

from .stica import add_stica_config

__all__ = ["get_cfg"]

_C = CfgNode()

# ---------------------------------------------------------------------------------------------------- #
# Run / distributed
# ---------------------------------------------------------------------------------------------------- #
# Devices (GPUs) per machine; 0 runs on CPU with the gloo backend (one process per shard).
_C.NUM_GPUS = 0
# Number of machines (or, with NUM_GPUS 0, processes) taking part in the job.
_C.NUM_SHARDS = 1
# Index of this machine/process in [0, NUM_SHARDS).
_C.SHARD_ID = 0
# torch.distributed backend used with GPUs ("nccl" or "gloo"); CPU runs always use "gloo".
_C.DIST_BACKEND = "nccl"
# Directory for logs, checkpoints, tensorboard events and metrics.json (any iopath path).
_C.OUTPUT_DIR = "./output"
# Seed for python, numpy and torch; each process adds its rank.
_C.RNG_SEED = 1
# Log a json_stats train line every LOG_PERIOD iterations.
_C.LOG_PERIOD = 10
# Log parameter count and GFLOPs (fvcore) at start-up.
_C.LOG_MODEL_INFO = True

# ---------------------------------------------------------------------------------------------------- #
# Training
# ---------------------------------------------------------------------------------------------------- #
_C.TRAIN = CfgNode()
# Run training.
_C.TRAIN.ENABLE = True
# Dataset name in the DATASET registry (case-insensitive): "kinetics", "ucf101", "hmdb51".
_C.TRAIN.DATASET = "kinetics"
# Global batch size (clips per step summed over all processes); must divide by the process count.
_C.TRAIN.BATCH_SIZE = 64
# Evaluate on the val split every EVAL_PERIOD epochs (and after the last epoch).
_C.TRAIN.EVAL_PERIOD = 10
# Save a checkpoint every CHECKPOINT_PERIOD epochs (and after the last epoch).
_C.TRAIN.CHECKPOINT_PERIOD = 10
# Also save mid-epoch, every CHECKPOINT_ITER_PERIOD steps of the run (0 = off); a run resumed from such a
# checkpoint repeats the uninterrupted run's steps.
_C.TRAIN.CHECKPOINT_ITER_PERIOD = 0
# Also save mid-epoch when this many minutes passed since the last checkpoint (0 = off; process 0's clock).
_C.TRAIN.CHECKPOINT_MINUTES = 0.0
# Mid-epoch checkpoints kept, the newest first (>= 1); none older than an epoch checkpoint is kept.
_C.TRAIN.CHECKPOINT_KEEP = 2
# Signals that make the run finish its step, save a checkpoint and exit with status 128 + the signal's
# number (SLURM's preemption SIGTERM, its --signal=USR1@T warning, submitit's SIGUSR2); [] = none.
_C.TRAIN.PREEMPT_SIGNALS = ["SIGTERM", "SIGUSR1", "SIGUSR2"]
# Resume from the newest checkpoint in OUTPUT_DIR/checkpoints when there is one.
_C.TRAIN.AUTO_RESUME = True
# Checkpoint to initialise the model from when not resuming ("" = none).
_C.TRAIN.CHECKPOINT_FILE_PATH = ""
# Layout of TRAIN.CHECKPOINT_FILE_PATH: "pytorch" recognises it by its key names; or the one it must be:
# "stica" (ours), "pyslowfast_resnet", "pyslowfast_contrastive" (the rho-SSL zoo), "pyslowfast_ptvresnet",
# "pytorchvideo" (its hub slow_r50), "gdt" (stica_slowfast/checkpoint/layouts.py). PySlowFast's "caffe2"
# .pkl files are not read.
_C.TRAIN.CHECKPOINT_TYPE = "pytorch"
# Encoder of a BYOL / MoCo TRAIN.CHECKPOINT_FILE_PATH a probe or classifier starts from: "online" or
# "momentum" (ours target.*, the zoo's backbone_hist.*).
_C.TRAIN.CHECKPOINT_ENCODER = "online"
# When initialising from TRAIN.CHECKPOINT_FILE_PATH, restart at epoch 0 (True) or continue its epoch.
_C.TRAIN.CHECKPOINT_EPOCH_RESET = True
# Train with automatic mixed precision (on CUDA in STICA.SOLVER.AMP_DTYPE, float16 with a GradScaler;
# bfloat16 autocast on CPU, which is only faster on CPUs with native bf16 support: 4x slower on the
# 2-core CI machine).
_C.TRAIN.MIXED_PRECISION = False

# ---------------------------------------------------------------------------------------------------- #
# Testing
# ---------------------------------------------------------------------------------------------------- #
_C.TEST = CfgNode()
# Run the multi-view test after training (or alone with TRAIN.ENABLE False).
_C.TEST.ENABLE = True
# Dataset name in the DATASET registry for the test split.
_C.TEST.DATASET = "kinetics"
# Videos per test batch summed over processes; each video contributes all its views.
_C.TEST.BATCH_SIZE = 8
# Checkpoint to test ("" = newest in OUTPUT_DIR/checkpoints, else the model as trained in this run).
_C.TEST.CHECKPOINT_FILE_PATH = ""
# Layout of TEST.CHECKPOINT_FILE_PATH, as TRAIN.CHECKPOINT_TYPE.
_C.TEST.CHECKPOINT_TYPE = "pytorch"
# Uniformly spaced temporal clips per test video.
_C.TEST.NUM_ENSEMBLE_VIEWS = 10
# Spatial crops per clip along the long side: 1 (centre) or 3 (start, centre, end).
_C.TEST.NUM_SPATIAL_CROPS = 3

# ---------------------------------------------------------------------------------------------------- #
# Data
# ---------------------------------------------------------------------------------------------------- #
_C.DATA = CfgNode()
# Directory with {train,val,test}.csv (Kinetics format) or the UCF-101/HMDB-51 split files.
_C.DATA.PATH_TO_DATA_DIR = ""
# Prefix joined to relative video paths in the csv/split files ("" = relative to PATH_TO_DATA_DIR).
_C.DATA.PATH_PREFIX = ""
# Separator between path and label in the csv files (PySlowFast uses a space).
_C.DATA.PATH_LABEL_SEPARATOR = " "
# Frames per clip fed to the model.
_C.DATA.NUM_FRAMES = 8
# Stride between sampled frames, in frames at TARGET_FPS.
_C.DATA.SAMPLING_RATE = 8
# Frame rate (frames/s) the sampling grid is defined at; videos of any fps are resampled to it.
_C.DATA.TARGET_FPS = 30
# Train: short side is resized to a random size in [min, max] pixels before a TRAIN_CROP_SIZE crop
# (used when TRAIN_JITTER_SCALES_RELATIVE is empty).
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]
# Train: random-resized-crop area range as fractions of the frame, e.g. [0.08, 1.0] ([] = off).
_C.DATA.TRAIN_JITTER_SCALES_RELATIVE = []
# Train: random-resized-crop aspect-ratio range, e.g. [0.75, 1.3333] (used with the above).
_C.DATA.TRAIN_JITTER_ASPECT_RELATIVE = []
# Train crop side in pixels.
_C.DATA.TRAIN_CROP_SIZE = 224
# Test: the short side is resized to this many pixels and square crops of this side are taken.
_C.DATA.TEST_CROP_SIZE = 256
# Train: random horizontal flip with probability 0.5.
_C.DATA.RANDOM_FLIP = True
# Per-channel mean subtracted from [0, 1] RGB input.
_C.DATA.MEAN = [0.45, 0.45, 0.45]
# Per-channel std dividing [0, 1] RGB input.
_C.DATA.STD = [0.225, 0.225, 0.225]
# Train, SSL appearance augmentation (rho-clip SSL, arXiv 2104.14558), drawn once per clip and shared
# by its frames. True switches on, in this order after crop and flip: colour jitter (with probability
# STICA.SSL_AUG.COLOR_JITTER_PROB), random grayscale (COLOR_RND_GRAYSCALE) and Gaussian blur
# (STICA.SSL_AUG.BLUR_PROB, SSL_BLUR_SIGMA_*). False: none of the three runs (as in PySlowFast, where
# all three live in color_jitter_video_ssl).
_C.DATA.SSL_COLOR_JITTER = False
# Colour jitter strengths [brightness, contrast, saturation], each >= 0: the factor is drawn uniformly
# from [max(0, 1 - s), 1 + s] (0 = that jitter off).
_C.DATA.SSL_COLOR_BRI_CON_SAT = [0.4, 0.4, 0.4]
# Colour jitter hue strength in [0, 0.5]: hue shift drawn uniformly from [-h, h] turns (0 = off).
_C.DATA.SSL_COLOR_HUE = 0.1
# Probability in [0, 1] that a clip is converted to grayscale (3 equal channels); needs SSL_COLOR_JITTER.
_C.DATA.COLOR_RND_GRAYSCALE = 0.0
# Gaussian blur sigma lower bounds [temporal (frames), spatial (pixels)], each >= 0 (PySlowFast's
# GaussianBlurVideo: index 0 = time, index 1 = space); sigma is drawn uniformly in [MIN, MAX] per clip.
_C.DATA.SSL_BLUR_SIGMA_MIN = [0.0, 0.1]
# Gaussian blur sigma upper bounds [temporal (frames), spatial (pixels)], each >= the matching MIN. A
# dimension whose MAX is 0 is not blurred; both 0 = blur off.
_C.DATA.SSL_BLUR_SIGMA_MAX = [0.0, 2.0]
# Input channels per pathway (one pathway: [3]).
_C.DATA.INPUT_CHANNEL_NUM = [3]
# Clips sampled from each training video (the rho of rho-clip SSL; 1 for supervised training).
_C.DATA.TRAIN_CROP_NUM_TEMPORAL = 1
# Independently augmented crops of each training clip (>= 1). Views per training video are
# TRAIN_CROP_NUM_TEMPORAL x TRAIN_CROP_NUM_SPATIAL, temporal-major; rho = 1 SSL (two crops of one clip,
# the paper's image-style baseline) is TRAIN_CROP_NUM_TEMPORAL 1, TRAIN_CROP_NUM_SPATIAL 2.
_C.DATA.TRAIN_CROP_NUM_SPATIAL = 1
# Decoder; only "pyav" (PyAV, one pass over the file for all clips and the audio).
_C.DATA.DECODING_BACKEND = "pyav"

# ---------------------------------------------------------------------------------------------------- #
# Data loader
# ---------------------------------------------------------------------------------------------------- #
_C.DATA_LOADER = CfgNode()
# Worker processes per data loader (0 = load in the training process).
_C.DATA_LOADER.NUM_WORKERS = 4
# Pin host memory for faster host-to-GPU copies (ignored on CPU).
_C.DATA_LOADER.PIN_MEMORY = True
# Let PyAV decode with several threads per video.
_C.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False
# DATA_LOADER.NUM_RETRIES and MAX_BAD_FRACTION: see config/stica.py (PySlowFast's config lacks them).

# ---------------------------------------------------------------------------------------------------- #
# Model
# ---------------------------------------------------------------------------------------------------- #
_C.MODEL = CfgNode()
# Model (method) name in the MODEL registry, e.g. "VideoClassifier".
_C.MODEL.MODEL_NAME = "VideoClassifier"
# Video backbone name in the BACKBONE registry: "r2plus1d_18", "r2plus1d_tiny", "slow_r50", "slow_tiny".
_C.MODEL.ARCH = "r2plus1d_18"
# Number of classes of the classification head (labels must lie in [0, NUM_CLASSES)).
_C.MODEL.NUM_CLASSES = 400
# Dropout probability before the classifier.
_C.MODEL.DROPOUT_RATE = 0.5
# Std of the normal init of the classifier weights.
_C.MODEL.FC_INIT_STD = 0.01
# Loss of the supervised classifier; only "cross_entropy".
_C.MODEL.LOSS_FUNC = "cross_entropy"
# What a classifier returns in eval mode to PySlowFast's loops (which pass a list of pathways):
# "softmax" (PySlowFast's default), "sigmoid" or "none" (logits); our engine always takes logits.
_C.MODEL.HEAD_ACT = "softmax"

# ---------------------------------------------------------------------------------------------------- #
# Contrastive / self-supervised methods (RhoSimCLR, RhoMoCo, RhoBYOL, RhoSwAV; PySlowFast key names)
# ---------------------------------------------------------------------------------------------------- #
_C.CONTRASTIVE = CfgNode()
# Softmax temperature (> 0) of the InfoNCE / NT-Xent / SwAV losses.
_C.CONTRASTIVE.T = 0.1
# Output size D of the projection MLP (integer >= 1); also the BYOL predictor's output size.
_C.CONTRASTIVE.DIM = 128
# Hidden width of the projection and predictor MLPs (integer >= 1).
_C.CONTRASTIVE.MLP_DIM = 2048
# Number of linear layers of the projection MLP (integer >= 1; 1 = a single linear layer).
_C.CONTRASTIVE.NUM_MLP_LAYERS = 3
# BatchNorm1d after every hidden linear layer of the projector / predictor (True or False).
_C.CONTRASTIVE.BN_MLP = True
# Use SyncBatchNorm (statistics over all processes) in the MLPs instead of BatchNorm1d; GPU runs only.
_C.CONTRASTIVE.BN_SYNC_MLP = False
# Number of keys L in the MoCo negative queue (integer >= 1).
_C.CONTRASTIVE.QUEUE_LEN = 65536
# Base EMA momentum in [0, 1] of the MoCo / BYOL target encoder (1 = frozen target).
_C.CONTRASTIVE.MOMENTUM = 0.994
# Raise the momentum from MOMENTUM to 1 with BYOL's cosine schedule over training (True), or keep it
# constant (False).
_C.CONTRASTIVE.MOMENTUM_ANNEALING = True
# Depths (linear layers, each >= 1) of the BYOL predictor MLPs, applied one after another, e.g. [2].
_C.CONTRASTIVE.PREDICTOR_DEPTHS = [2]
# MoCo / BYOL: encode the rho clips one at a time (per-clip BatchNorm statistics, as PySlowFast's
# sequential mode) instead of in one concatenated batch (True or False). The per-pair losses are summed
# into one graph either way: backward runs in the engine, outside forward_train.
_C.CONTRASTIVE.SEQUENTIAL = False
# Minimum temporal distance in seconds from the first training clip's start to each other clip's
# start (rho-clip sampling); a negative value means no bound (PySlowFast's -inf, which YAML cannot hold
# portably).
_C.CONTRASTIVE.DELTA_CLIPS_MIN = -1.0
# Maximum temporal distance in seconds from the first training clip's start to each other clip's
# start; a negative value means no bound (PySlowFast's inf).
_C.CONTRASTIVE.DELTA_CLIPS_MAX = -1.0
# RhoSimCLR: gather the embeddings of all processes (with gradients) so every process contrasts against
# the global batch (True), or use only this process's batch as negatives (False).
_C.CONTRASTIVE.SIMCLR_DIST_ON = True
# RhoSwAV: number of past projections (integer >= 0) kept in a queue and added to the Sinkhorn-Knopp
# batch; 0 = no queue. (Spelling "QEUE" is PySlowFast's.)
_C.CONTRASTIVE.SWAV_QEUE_LEN = 0

# ---------------------------------------------------------------------------------------------------- #
# Batch norm
# ---------------------------------------------------------------------------------------------------- #
_C.BN = CfgNode()
# "batchnorm", or "sync_batchnorm" (statistics over all processes; GPU runs only).
_C.BN.NORM_TYPE = "batchnorm"
# Weight decay applied to BN parameters.
_C.BN.WEIGHT_DECAY = 0.0

# ---------------------------------------------------------------------------------------------------- #
# Optimiser and schedule
# ---------------------------------------------------------------------------------------------------- #
_C.SOLVER = CfgNode()
# Base learning rate (see STICA.SOLVER.REFERENCE_BATCH_SIZE for scaling with the batch).
_C.SOLVER.BASE_LR = 0.1
# "cosine" (half-period cosine to COSINE_END_LR) or "steps_with_relative_lrs" (STEPS/LRS).
_C.SOLVER.LR_POLICY = "cosine"
# Final learning rate of the cosine schedule.
_C.SOLVER.COSINE_END_LR = 0.0
# Start the cosine after warmup (True) or count it from epoch 0 (False, PySlowFast default).
_C.SOLVER.COSINE_AFTER_WARMUP = False
# Epoch boundaries for "steps_with_relative_lrs", e.g. [0, 60, 120].
_C.SOLVER.STEPS = []
# Relative LR (multiplier of BASE_LR) in each step interval, e.g. [1, 0.1, 0.01].
_C.SOLVER.LRS = []
# Number of training epochs.
_C.SOLVER.MAX_EPOCH = 300
# SGD momentum.
_C.SOLVER.MOMENTUM = 0.9
# SGD dampening.
_C.SOLVER.DAMPENING = 0.0
# Nesterov momentum for SGD.
_C.SOLVER.NESTEROV = True
# L2 weight decay.
_C.SOLVER.WEIGHT_DECAY = 1e-4
# Linear warmup length in epochs (fractions allowed).
_C.SOLVER.WARMUP_EPOCHS = 0.0
# Learning rate at the start of the warmup.
_C.SOLVER.WARMUP_START_LR = 0.01
# "sgd" or "adamw".
_C.SOLVER.OPTIMIZING_METHOD = "sgd"
# AdamW betas.
_C.SOLVER.BETAS = (0.9, 0.999)
# Multiply the LR by NUM_SHARDS (PySlowFast's multi-node rule).
_C.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False
# No weight decay on 1-D parameters (biases, norms).
_C.SOLVER.ZERO_WD_1D_PARAM = False
# Clip each gradient value to [-v, v] (None = off).
_C.SOLVER.CLIP_GRAD_VAL = None
# Clip the global gradient L2 norm (None = off).
_C.SOLVER.CLIP_GRAD_L2NORM = None

# ---------------------------------------------------------------------------------------------------- #
# TensorBoard
# ---------------------------------------------------------------------------------------------------- #
_C.TENSORBOARD = CfgNode()
# Write TensorBoard events (on the master process).
_C.TENSORBOARD.ENABLE = True
# Event directory ("" = OUTPUT_DIR/tensorboard).
_C.TENSORBOARD.LOG_DIR = ""


def get_cfg() -> CfgNode:
    """A fresh copy of the full default config (PySlowFast keys + ``STICA.*``)."""
    cfg = _C.clone()
    add_stica_config(cfg)
    return cfg
