"""Shared test set-up: every test starts from the same seeds (python, numpy, torch)."""

import pytest

from stica_slowfast.utils.misc import set_seed


@pytest.fixture(autouse=True)
def _seed():
    set_seed(0)
