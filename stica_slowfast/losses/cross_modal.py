"""Cross-modal (video <-> audio) contrastive loss.

The audio-visual objective of STiCA (Patrick et al., "Space-Time Crop & Attend: Improving Cross-modal
Video Representation Learning", arXiv 2103.10211), as in GDT (Patrick et al., arXiv 2003.04298): a
symmetric InfoNCE in which a clip's video embedding must pick out its own audio among the other
clips' audio, and vice versa. The within-video crop loss of STiCA is plain :func:`~.info_nce.info_nce`.
"""

from typing import Optional

import torch

from .info_nce import info_nce

__all__ = ["cross_modal_info_nce"]


def cross_modal_info_nce(
    video: torch.Tensor,
    audio: torch.Tensor,
    *,
    temperature: float,
    video_negatives: Optional[torch.Tensor] = None,
    audio_negatives: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Symmetric video <-> audio InfoNCE over ``N`` paired embeddings.

    All inputs are L2-normalised along the last dimension. Row ``i`` of ``video`` and row ``i`` of
    ``audio`` come from the same clip. With ``v``, ``a`` the normalised rows, ``nv``, ``na`` the
    normalised extra negatives and ``T`` the temperature::

        v->a:  L_va = 1/N sum_i -log( exp(v_i.a_i/T) / (sum_j exp(v_i.a_j/T) + sum_m exp(v_i.na_m/T)) )
        a->v:  L_av = 1/N sum_i -log( exp(a_i.v_i/T) / (sum_j exp(a_i.v_j/T) + sum_m exp(a_i.nv_m/T)) )
        loss = (L_va + L_av) / 2

    So a video query is contrasted with audio keys only (the other clips' audio and
    ``audio_negatives``), and an audio query with video keys only.

    Distributed training: pass the embeddings of *all* processes, gathered with
    :func:`~stica_slowfast.utils.distributed.all_gather_with_grad` (``(W * B, D)`` each, the same
    rank order for video and audio so the rows stay paired). Every process then computes the same
    global loss over all ``W * B`` pairs; the gather's backward sums the ``W`` identical gradients
    and DDP's gradient averaging divides by ``W``, which gives each input the gradient of the global
    loss (as :class:`~stica_slowfast.models.ssl.simclr.RhoSimCLR` does with ``nt_xent``).

    Gradients flow into every input; detach the extra negatives (e.g. a memory queue) before the
    call when they should not receive gradients.

    Args:
        video: ``(N, D)`` video embeddings.
        audio: ``(N, D)`` audio embeddings; row ``i`` is the positive of video row ``i``.
        temperature: softmax temperature ``T > 0``.
        video_negatives: optional ``(M, D)`` extra video embeddings, negatives for every audio query.
        audio_negatives: optional ``(K, D)`` extra audio embeddings, negatives for every video query.

    Returns:
        Scalar tensor: the mean of the two directions' mean cross-entropies.
    """
    if video.dim() != 2 or audio.shape != video.shape:
        raise ValueError(
            "video and audio must both be (N, D) with row i a pair; "
            f"got {tuple(video.shape)}, {tuple(audio.shape)}"
        )
    video_to_audio = info_nce(video, audio, temperature=temperature, negatives=audio_negatives)
    audio_to_video = info_nce(audio, video, temperature=temperature, negatives=video_negatives)
    return 0.5 * (video_to_audio + audio_to_video)
