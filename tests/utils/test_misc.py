"""Run-time helpers: derived seeds."""

import numpy as np

from stica_slowfast.utils.misc import derive_seed, derive_seeds


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
