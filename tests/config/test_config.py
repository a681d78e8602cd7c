import glob
import os
import subprocess
import sys

import pytest
from fvcore.common.config import CfgNode

from stica_slowfast.config import (
    ConfigError,
    add_stica_config,
    get_cfg,
    load_config,
    merge_from_list,
)
from stica_slowfast.config.defaults import _C
from stica_slowfast.checkpoint import checkpoint_path
from stica_slowfast.config.args import load_config_from_args, parse_args

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def test_configs_exist():
    assert any(p.endswith(os.path.join("demo", "supervised_tiny.yaml")) for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=[os.path.relpath(p, REPO) for p in CONFIGS])
def test_every_yaml_loads_and_merges(path):
    cfg = load_config([path], ["RNG_SEED", "7"])
    assert cfg.RNG_SEED == 7
    assert cfg.is_frozen()


DEMO_PROBES = {  # demo probe config -> the demo pretraining whose last checkpoint it loads
    "linear_tiny.yaml": "rho_byol_tiny.yaml",
    "stica_linear_tiny.yaml": "stica_tiny.yaml",
    "stica_audio_linear_tiny.yaml": "stica_tiny.yaml",
}


@pytest.mark.parametrize("probe, pretrain", DEMO_PROBES.items())
def test_demo_probe_loads_the_last_checkpoint_of_its_pretraining(probe, pretrain):
    """A demo probe's TRAIN.CHECKPOINT_FILE_PATH follows its pretraining's OUTPUT_DIR and MAX_EPOCH (a
    change of either would otherwise leave the probe pointing at a file that is never written)."""
    demo = os.path.join(REPO, "configs", "demo")
    pre = load_config([os.path.join(demo, pretrain)])
    expected = checkpoint_path(pre.OUTPUT_DIR, pre.SOLVER.MAX_EPOCH)
    got = load_config([os.path.join(demo, probe)]).TRAIN.CHECKPOINT_FILE_PATH
    assert os.path.normpath(got) == os.path.normpath(expected)


@pytest.mark.parametrize("probe, pretrain", [*DEMO_PROBES.items(), ("linear_tiny.yaml", "supervised_bound_tiny.yaml")])
def test_demo_probe_reads_the_data_and_input_of_its_pretraining(probe, pretrain):
    """Run on its own, a demo probe generates the dataset its pretraining did (the same videos, so the
    same train/test split) and cuts the clips the encoder was trained on."""
    demo = os.path.join(REPO, "configs", "demo")
    pre, got = (load_config([os.path.join(demo, name)]) for name in (pretrain, probe))
    assert got.STICA.SYNTHETIC == pre.STICA.SYNTHETIC
    assert got.MODEL.NUM_CLASSES == pre.MODEL.NUM_CLASSES
    for key in ("NUM_FRAMES", "SAMPLING_RATE", "TARGET_FPS", "TRAIN_CROP_SIZE", "TEST_CROP_SIZE"):
        assert got.DATA[key] == pre.DATA[key], key
    if got.STICA.AUDIO.ENABLE:  # an audio probe: the spectrograms and the encoder of the pretraining
        for key in ("SAMPLE_RATE", "NUM_MEL_BINS", "WINDOW_MS", "HOP_MS", "DURATION", "ARCH"):
            assert got.STICA.AUDIO[key] == pre.STICA.AUDIO[key], key


def test_every_default_has_a_comment():
    source = open(os.path.join(REPO, "stica_slowfast", "config", "defaults.py")).read().splitlines()
    source += open(os.path.join(REPO, "stica_slowfast", "config", "stica.py")).read().splitlines()
    for i, line in enumerate(source):
        stripped = line.strip()
        is_default = "= " in stripped and stripped.split("=")[0].strip().split(".")[-1].isupper()
        if is_default and "CfgNode()" not in stripped and stripped.startswith(("_C.", "stica.")):
            above = [source[j].strip() for j in range(i - 1, -1, -1)]
            first_non_default = next(a for a in above if not (a.startswith(("_C.", "stica.")) and "CfgNode()" not in a))
            assert first_non_default.startswith("#"), f"no comment above: {stripped}"


def test_unknown_override_names_key_and_suggestion():
    with pytest.raises(ConfigError) as err:
        load_config(opts=["SOLVER.BASE_LRR", "0.1"])
    message = str(err.value)
    assert "SOLVER.BASE_LRR" in message and "did you mean SOLVER.BASE_LR?" in message
    assert "\n" not in message


def test_unknown_yaml_key_and_nested_group(tmp_path):
    path = _write(tmp_path / "bad.yaml", "TRAIN:\n  BATCHSIZE: 8\n")
    with pytest.raises(ConfigError, match=r"TRAIN\.BATCHSIZE .*bad\.yaml.*did you mean TRAIN\.BATCH_SIZE"):
        load_config([path])
    path = _write(tmp_path / "bad2.yaml", "SOLVER: 3\n")
    with pytest.raises(ConfigError, match="group of keys"):
        load_config([path])


def test_duplicate_yaml_key_is_an_error(tmp_path):
    path = _write(tmp_path / "dup.yaml", "SOLVER:\n  BASE_LR: 0.1\n  MAX_EPOCH: 3\n  BASE_LR: 0.2\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml:4: duplicate key 'BASE_LR' \(first at line 2\)"):
        load_config([path])


def test_wrong_type_is_an_error_and_int_to_float_is_fine():
    with pytest.raises(ConfigError, match=r"SOLVER\.BASE_LR expects float.*'abc'"):
        load_config(opts=["SOLVER.BASE_LR", "abc"])
    with pytest.raises(ConfigError, match=r"TRAIN\.ENABLE expects bool"):
        load_config(opts=["TRAIN.ENABLE", "1"])
    cfg = load_config(opts=["SOLVER.BASE_LR", "1", "DATA.MEAN", "[0.5, 0.5, 0.5]", "SOLVER.CLIP_GRAD_VAL", "2.0"])
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.DATA.MEAN == [0.5, 0.5, 0.5]
    assert cfg.SOLVER.CLIP_GRAD_VAL == 2.0


def test_odd_override_list():
    with pytest.raises(ConfigError, match="KEY VALUE pairs"):
        merge_from_list(get_cfg(), ["SOLVER.BASE_LR"])


def test_base_inheritance_chain(tmp_path):
    _write(tmp_path / "a.yaml", "SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 3\nTRAIN:\n  BATCH_SIZE: 4\n")
    os.makedirs(tmp_path / "sub")
    _write(tmp_path / "sub" / "b.yaml", "_BASE_: ../a.yaml\nSOLVER:\n  MAX_EPOCH: 5\n")
    leaf = _write(tmp_path / "sub" / "c.yaml", "_BASE_: b.yaml\nTRAIN:\n  BATCH_SIZE: 8\n")
    cfg = load_config([leaf], ["SOLVER.BASE_LR", "0.25"])
    assert (cfg.SOLVER.BASE_LR, cfg.SOLVER.MAX_EPOCH, cfg.TRAIN.BATCH_SIZE) == (0.25, 5, 8)


def test_cross_key_validation():
    with pytest.raises(ConfigError, match="TRAIN.BATCH_SIZE=5 .*divisible by the 2 processes"):
        load_config(opts=["TRAIN.BATCH_SIZE", "5", "NUM_SHARDS", "2"])
    with pytest.raises(ConfigError, match="SOLVER.OPTIMIZING_METHOD must be one of"):
        load_config(opts=["SOLVER.OPTIMIZING_METHOD", "sgdd"])
    with pytest.raises(ConfigError, match="SHARD_ID"):
        load_config(opts=["SHARD_ID", "1"])
    with pytest.raises(ConfigError, match="STICA.MEMORY_FORMAT must be one of"):
        load_config(opts=["STICA.MEMORY_FORMAT", "nhwc"])
    for also in ("[[]]", "[['a', '']]", "[['a', '', ''], ['a', 'x.pyth', '']]", "[['', '', '']]", "['a']"):
        with pytest.raises(ConfigError, match="STICA.FEATURE_PROBE.ALSO must be a list of"):
            load_config(opts=["STICA.FEATURE_PROBE.ALSO", also])
    assert load_config(opts=["STICA.FEATURE_PROBE.ALSO", "[['random', '', ''], ['colour', '', 'colour_stats']]"])


def test_add_stica_config_extends_a_foreign_cfg():
    foreign = CfgNode()  # e.g. PySlowFast's get_cfg(): its keys must stay untouched
    foreign.SOLVER = CfgNode({"BASE_LR": 0.3})
    foreign.DATA_LOADER = CfgNode({"NUM_WORKERS": 3})
    add_stica_config(foreign)
    assert foreign.SOLVER.BASE_LR == 0.3
    assert foreign.DATA_LOADER.NUM_WORKERS == 3 and foreign.DATA_LOADER.NUM_RETRIES == 10
    assert foreign.STICA.AUDIO.SAMPLE_RATE == get_cfg().STICA.AUDIO.SAMPLE_RATE
    assert "STICA" not in _C  # the defaults themselves are not modified


def test_parser_accepts_trailing_pairs_and_opts(tmp_path):
    path = _write(tmp_path / "x.yaml", "SOLVER:\n  MAX_EPOCH: 3\n")
    args = parse_args(["--cfg", path, "SOLVER.BASE_LR", "0.2", "--num_shards", "2", "--shard_id", "1",
                       "--opts", "TRAIN.BATCH_SIZE", "8"])
    cfg = load_config_from_args(args)
    assert (cfg.SOLVER.MAX_EPOCH, cfg.SOLVER.BASE_LR, cfg.TRAIN.BATCH_SIZE) == (3, 0.2, 8)
    assert (cfg.NUM_SHARDS, cfg.SHARD_ID) == (2, 1)
    args = parse_args(["--cfg", path, "--opts", "SOLVER.BASE_LR", "0.3"])
    assert load_config_from_args(args).SOLVER.BASE_LR == 0.3


def test_run_net_bad_key_fails_with_one_line():
    config = os.path.join(REPO, "configs", "demo", "supervised_tiny.yaml")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "run_net.py"), "--cfg", config, "SOLVER.BASE_LRR", "0.1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "SOLVER.BASE_LRR" in lines[0] and "SOLVER.BASE_LR?" in lines[0]
