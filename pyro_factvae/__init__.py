"""pyro_factvae: factVAE in Pyro.

A deep generative model for multi-group data that trains and predicts with whole groups
missing, and learns a sparse map of which latent dimensions drive which groups.

Ainsworth, Foti & Fox, "Disentangled VAE Representations for Multi-Aspect and Missing Data",
2018.
"""

__version__ = "0.1.0"

from .data import GroupedData  # noqa: E402
from .factvae import FactVAE  # noqa: E402
from .guide import Guide  # noqa: E402
from .model import Layout, Model  # noqa: E402
from .optim import ProximalOptim, collapse  # noqa: E402
from .poe import product_of_experts  # noqa: E402
from .priors import prox_group_lasso  # noqa: E402

__all__ = [
    "FactVAE",
    "GroupedData",
    "Guide",
    "Layout",
    "Model",
    "ProximalOptim",
    "collapse",
    "product_of_experts",
    "prox_group_lasso",
]
