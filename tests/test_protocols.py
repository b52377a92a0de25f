"""Every registered part satisfies the protocol that says what the model, guide and trainer
need of it, and a part missing a piece does not."""

import inspect

import torch

import pyro_factvae  # noqa: F401  (registers the built-in parts)
from pyro_factvae.protocols import Experts, LikelihoodFamily, PhiPosterior
from pyro_factvae.registry import EXPERTS, LIKELIHOODS, OBJECTIVES, PHI_POSTERIORS


def _members(protocol) -> set[str]:
    return {n for n in dir(protocol) if not n.startswith("_")} | set(
        getattr(protocol, "__annotations__", {})
    )


def test_every_likelihood_satisfies_the_likelihood_protocol():
    assert {"normal", "bernoulli", "categorical", "poisson", "negative_binomial"} <= set(
        LIKELIHOODS.names
    )
    for name in LIKELIHOODS.names:
        lik = LIKELIHOODS.get(name)(2, 3)
        assert isinstance(lik, LikelihoodFamily), name
        assert lik.name == name


def test_every_phi_posterior_satisfies_its_protocol_and_names_a_registered_objective():
    phis = [torch.zeros(1, 4, 2)]
    for name in PHI_POSTERIORS.names:
        part = PHI_POSTERIORS.get(name)(phis)
        assert isinstance(part, PhiPosterior), name
        assert isinstance(part.collapsed, bool)
        OBJECTIVES.get(part.objective)  # a ValueError if it names no objective


def test_every_expert_combination_satisfies_the_experts_protocol():
    for name in EXPERTS.names:
        assert isinstance(EXPERTS.get(name)(), Experts), name


def test_a_part_missing_a_method_fails_its_protocol():
    class NoMean:
        name = "x"

        def dists(self, out, cells=None):
            return []

    assert not isinstance(NoMean(), LikelihoodFamily)
    assert "mean" in _members(LikelihoodFamily)
    # the protocol's methods are the ones the base class provides or asks for
    from pyro_factvae.module.likelihoods import Likelihood

    # flags, the attributes besides the name
    assert Likelihood.counts is False and Likelihood.paddable is False and Likelihood.holds
    for member in _members(LikelihoodFamily) - {"name", "counts", "paddable", "holds"}:
        assert callable(getattr(Likelihood, member)), member
        assert inspect.signature(getattr(Likelihood, member))
