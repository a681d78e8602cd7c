"""Install stica_slowfast: ``pip install -e ".[test]"``."""

import os
import re

from setuptools import find_packages, setup


def _version() -> str:
    init = os.path.join(os.path.dirname(__file__), "stica_slowfast", "__init__.py")
    with open(init) as f:
        return re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)


setup(
    name="stica_slowfast",
    version=_version(),
    description=(
        "Self-supervised video representation learning (rho-clip SSL, STiCA) "
        "as a PySlowFast plugin"
    ),
    long_description=open("README.md").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(exclude=("tests", "tests.*", "tools", "configs")),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "pytorchvideo>=0.1.5",
        "fvcore>=0.1.5",
        "iopath>=0.1.9",
        "av>=11",
        # Batched per-clip colour and blur ops on the training device (STICA.AUG.DEVICE).
        "kornia>=0.7.1",
        "numpy",
        "pyyaml",
        "simplejson",
        "tensorboard",
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2.1"],
        "slurm": ["submitit>=1.4"],
    },
)
