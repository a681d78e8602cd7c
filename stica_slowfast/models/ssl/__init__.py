"""rho-clip self-supervised methods (Feichtenhofer et al., arXiv 2104.14558): RhoSimCLR, RhoMoCo,
RhoBYOL, RhoSwAV; and STiCA (Patrick et al., arXiv 2103.10211). Importing this package registers them
in the MODEL registry."""

from .base import RhoSSLBase, ordered_pairs
from .byol import RhoBYOL
from .moco import RhoMoCo
from .simclr import RhoSimCLR
from .stica import STiCA
from .swav import RhoSwAV

__all__ = ["RhoSSLBase", "ordered_pairs", "RhoSimCLR", "RhoMoCo", "RhoBYOL", "RhoSwAV", "STiCA"]
