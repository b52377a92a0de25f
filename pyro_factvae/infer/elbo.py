"""The negative ELBO of factVAE, term by term (the mean-field ELBO: analytic KL for ``z``).

:func:`~pyro_factvae.infer.elbo.elbo_terms` traces the guide, replays the model against it, and
returns the negative
ELBO split by model term (:func:`pyro_factvae.sites.term`): the likelihood of each group, the
KL of ``z``, the theta prior, and the group-lasso prior (``Phi``, ``gamma_sq``; zero under
:func:`~pyro_factvae.infer.collapse.collapse`). Their sum is the loss Pyro's
``TraceMeanField_ELBO`` would give; the split lets training report the data terms apart from
the priors, and name the term that went non-finite.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from torch.distributions import kl_divergence

from .. import sites

__all__ = ["DATA_TERMS", "elbo_terms", "is_data_term"]

#: the kinds of site whose terms make up the data part of the ELBO
DATA_TERMS = ("x", sites.Z)


def is_data_term(label: str) -> bool:
    """Whether a term label of :func:`~pyro_factvae.infer.elbo.elbo_terms` belongs to the data
    (likelihood, KL of z)."""
    return label.startswith("likelihood of group") or label == sites.term(sites.Z)


def elbo_terms(model: Callable, guide: Callable, *args, **kwargs) -> dict[str, torch.Tensor]:
    """``{term: -contribution}`` of one single-sample ELBO estimate; the loss is the sum."""
    guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    terms: dict[str, torch.Tensor] = {}

    def add(name: str, value: torch.Tensor) -> None:
        label = sites.term(name)
        terms[label] = terms[label] + value if label in terms else value

    for name, site in model_trace.nodes.items():
        if site["type"] != "sample":
            continue
        fn, value = site["fn"], site["value"]
        if name == sites.Z and name in guide_trace.nodes:
            q = guide_trace.nodes[name]
            kl = scale_and_mask(kl_divergence(q["fn"], fn), q["scale"], q["mask"])
            add(name, kl.sum())
            continue
        add(name, -scale_and_mask(fn.log_prob(value), site["scale"], site["mask"]).sum())
    for name, site in guide_trace.nodes.items():
        if site["type"] != "sample" or name == sites.Z or site["is_observed"]:
            continue
        lp = scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
        add(name, lp.sum())
    return terms
