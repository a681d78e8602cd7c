"""Keys PySlowFast does not have, all under ``STICA.*``.

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


def add_synthetic_config(stica: CfgNode) -> None:
    stica.SYNTHETIC = CfgNode()
    # Generate the synthetic audio-visual dataset into OUTPUT_DIR/synthetic_data when
    # DATA.PATH_TO_DATA_DIR is empty (the demo configs). The class count is MODEL.NUM_CLASSES.
    stica.SYNTHETIC.ENABLE = False
    # Videos per class in each split.
    stica.SYNTHETIC.TRAIN_PER_CLASS = 24
    stica.SYNTHETIC.VAL_PER_CLASS = 4
    stica.SYNTHETIC.TEST_PER_CLASS = 6
    # Frame size in pixels and frame rate in frames/s of the generated videos.
    stica.SYNTHETIC.WIDTH = 96
    stica.SYNTHETIC.HEIGHT = 80
    stica.SYNTHETIC.FPS = 25
    # Length of each video in seconds.
    stica.SYNTHETIC.DURATION = 3.0
    # Audio sample rate of the generated files in Hz.
    stica.SYNTHETIC.AUDIO_RATE = 22050
    # Seed of the generator (the same seed writes the same dataset).
    stica.SYNTHETIC.SEED = 0


def add_stica_config(cfg: CfgNode) -> CfgNode:
    """Add the ``STICA.*`` subtree to ``cfg`` (in place) and return it."""
    cfg.STICA = CfgNode()
    add_audio_config(cfg.STICA)
    add_data_config(cfg.STICA)
    add_solver_config(cfg.STICA)
    add_synthetic_config(cfg.STICA)
    return cfg
