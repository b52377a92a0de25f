"""Inference for factVAE: Algorithm 1's optimizers, the collapsed objective, the training loop,
the trainer and its resumable runs, the lam path. Everything here takes a FitState or
(model, guide, optimizers), never the estimator."""

from .collapse import collapse
from .loop import NonFiniteError
from .optim import Optimizers, ProximalOptim
from .run import Trainer

__all__ = ["NonFiniteError", "Optimizers", "ProximalOptim", "Trainer", "collapse"]
