"""A DataLoader worker starts after its parent decoded video (utils/forking.py).

The parent holds, as garbage only a collection frees, a decoder that ran its threads; a forked
worker that collects it would wait for those threads forever.
"""

import gc

import numpy as np
from torch.utils.data import DataLoader

from stica_slowfast.data.decoding import open_video
from stica_slowfast.synthetic import write_video


def _decode_and_keep_the_traceback(path: str) -> None:
    """Decode with threads, then keep an exception: its traceback holds this frame, which holds the
    exception and the video (with its decoder): a cycle once this returns, as ``pytest.raises`` or a
    logged error makes."""
    try:
        with open_video(path, threads=True) as video:
            video.decode_clips([0.0, 0.5], num_frames=4, frame_step=0.1)
            raise RuntimeError("stop")
    except RuntimeError as err:
        kept = err  # noqa: F841


def _collect(_worker_id: int) -> None:
    gc.collect()


def test_a_worker_starts_after_its_parent_decoded_with_threads(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "video.mp4")
    write_video(path, rng.integers(0, 256, (25, 64, 96, 3), dtype=np.uint8), fps=25.0)
    gc.disable()  # the decoder stays garbage until the fork, as between two automatic collections
    try:
        _decode_and_keep_the_traceback(path)
        loader = DataLoader(range(3), batch_size=3, num_workers=1, worker_init_fn=_collect,
                            multiprocessing_context="fork", timeout=60)
        assert [b.tolist() for b in loader] == [[0, 1, 2]]
    finally:
        gc.enable()
    assert gc.get_freeze_count() == 0  # the parent collects its own garbage again
