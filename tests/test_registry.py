import os
import subprocess
import sys
import textwrap

import stica_slowfast
from stica_slowfast import registry
from stica_slowfast.config import get_cfg
from stica_slowfast.models import build_model


def test_import_registers_everything():
    assert {"VideoClassifier"} <= set(dict(registry.MODEL))
    assert {"r2plus1d_18", "r2plus1d_tiny", "slow_r50", "slow_tiny"} <= set(dict(registry.BACKBONE))
    assert {"kinetics", "ucf101", "hmdb51"} <= {n.lower() for n in dict(registry.DATASET)}
    assert stica_slowfast.__version__


def test_dataset_lookup_ignores_case():
    assert registry.get_dataset_class("Kinetics") is registry.get_dataset_class("kinetics")


def test_build_model_by_name():
    cfg = get_cfg()
    cfg.MODEL.ARCH = "r2plus1d_tiny"
    cfg.MODEL.NUM_CLASSES = 5
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.MODEL_NAME


def test_models_are_bridged_into_pyslowfast_registry(tmp_path):
    # PySlowFast cannot be installed here (it needs detectron2); a package exposing the same
    # registry location stands in for it, to check the bridge's contract: our names appear, theirs stay.
    build = tmp_path / "slowfast" / "models" / "build.py"
    build.parent.mkdir(parents=True)
    (tmp_path / "slowfast" / "__init__.py").write_text("")
    (build.parent / "__init__.py").write_text("")
    build.write_text(textwrap.dedent("""
        from fvcore.common.registry import Registry
        MODEL_REGISTRY = Registry("MODEL")
        @MODEL_REGISTRY.register()
        class ContrastiveModel:  # one of PySlowFast's own names
            pass
    """))
    code = ("import stica_slowfast; from slowfast.models.build import MODEL_REGISTRY as R; "
            "print(sorted(n for n, _ in R))")
    env = dict(os.environ, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names = eval(out.stdout.strip().splitlines()[-1])
    assert "ContrastiveModel" in names and "VideoClassifier" in names
