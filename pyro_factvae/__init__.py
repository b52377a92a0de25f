"""pyro_factvae: factVAE in Pyro.

A deep generative model for multi-group data that trains and predicts with whole groups
missing, and learns a sparse map of which latent dimensions drive which groups.

Ainsworth, Foti & Fox, "Disentangled VAE Representations for Multi-Aspect and Missing Data",
2018.
"""

from ._version import __version__
from .config import ModelConfig
from .data import GroupedData
from .estimator import FactVAE
from .fit_config import FitConfig
from .infer import NonFiniteError, Optimizers, ProximalOptim, Trainer, collapse
from .layout import Layout
from .module import Guide, Model
from .module.experts import product_of_experts
from .module.priors import prox_group_lasso

__all__ = [
    "FactVAE",
    "FitConfig",
    "GroupedData",
    "Guide",
    "Layout",
    "Model",
    "ModelConfig",
    "NonFiniteError",
    "Optimizers",
    "ProximalOptim",
    "Trainer",
    "__version__",
    "collapse",
    "product_of_experts",
    "prox_group_lasso",
]
