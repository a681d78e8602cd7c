"""Run-time helpers: derived seeds, the DDP key prefix."""

import numpy as np
import pytest

from stica_slowfast.utils.misc import derive_seed, derive_seeds, strip_ddp_prefix


def test_derived_seeds_are_a_function_of_their_keys():
    assert derive_seed(7, 3, 0, 1) == derive_seed(7, 3, 0, 1)
    # Nearby keys give unrelated seeds (seed + epoch + rank would make these collide).
    assert len({derive_seed(7, 3, 0, 1), derive_seed(7, 2, 1, 1), derive_seed(8, 2, 0, 1)}) == 3
    assert derive_seed(-1, 0) == derive_seed(2**64 - 1, 0)  # negative seeds are taken modulo 2**64
    assert 0 <= derive_seed(-5, 9) < 2**32


def test_derive_seeds_is_a_prefix_stable_stream():
    many = derive_seeds(7, 3, 0, 2, count=1000)
    assert many.dtype == np.uint32 and len(set(many.tolist())) == 1000
    assert np.array_equal(derive_seeds(7, 3, 0, 2, count=5), many[:5])  # seed i does not depend on count
    assert int(many[0]) == derive_seed(7, 3, 0, 2)
    assert not np.array_equal(derive_seeds(7, 4, 0, 2, count=5), many[:5])


def test_strip_ddp_prefix_only_when_every_key_has_it_and_on_a_copy():
    saved = {"module.b": 1, "module.module.a": 2, "module.c": 3}
    stripped = strip_ddp_prefix(saved)
    assert list(stripped.items()) == [("b", 1), ("module.a", 2), ("c", 3)]  # once, in order
    assert list(saved) == ["module.b", "module.module.a", "module.c"]  # the input is unchanged
    mixed = {"module.a": 1, "b": 2}  # a model with a child called "module": not a DDP state
    assert strip_ddp_prefix(mixed) is mixed and strip_ddp_prefix({}) == {}
    # torch's in-place renaming would turn module.module.w into module.w before that key is renamed.
    with pytest.raises(ValueError, match="merge 1"):
        strip_ddp_prefix({"module.module.w": 1, "module.w": 2})
