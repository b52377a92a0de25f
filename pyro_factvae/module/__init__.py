"""The Pyro programs of factVAE: likelihoods, networks, priors, experts, the posteriors over
``Phi``, the :class:`Model` and its :class:`Guide`. Nothing here knows the estimator."""

from . import categorical, counts, experts, likelihoods, posteriors  # noqa: F401  (register them)
from .guide import Guide
from .model import Model

__all__ = ["Guide", "Model"]
