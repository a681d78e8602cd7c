"""Self-supervised objectives as pure functions (:data:`~stica_slowfast.registry.LOSS` lists ``__all__``).

* :func:`info_nce`, :func:`nt_xent` -- MoCo / SimCLR contrastive losses (:mod:`.info_nce`).
* :func:`byol_loss` -- BYOL's ``2 - 2 cos`` regression (:mod:`.byol`).
* :func:`sinkhorn_knopp`, :func:`swav_loss` -- SwAV codes and swapped prediction (:mod:`.swav`).
* :func:`cross_modal_info_nce` -- symmetric video <-> audio InfoNCE of GDT / STiCA (:mod:`.cross_modal`).
* :func:`crop_info_nce`, :func:`pairwise_info_nce` -- STiCA's within-video crop loss (:mod:`.crop_info_nce`).
"""

from .byol import byol_loss
from .crop_info_nce import crop_info_nce, pairwise_info_nce
from .cross_modal import cross_modal_info_nce
from .info_nce import info_nce, nt_xent
from .swav import sinkhorn_knopp, swav_loss

__all__ = ["info_nce", "nt_xent", "byol_loss", "sinkhorn_knopp", "swav_loss", "cross_modal_info_nce",
           "crop_info_nce", "pairwise_info_nce"]
