"""Parts of one's own in the registries: a notebook cell run again replaces its class, two
classes under one name are refused with the way out, and a family that lacks a method is
refused when the model is built."""

import numpy as np
import pyro.distributions as dist
import pytest

from pyro_factvae import FactVAE
from pyro_factvae.module.likelihoods import Likelihood, masked_event
from pyro_factvae.registry import LIKELIHOODS

OWN = ("laplace-rerun", "laplace-taken", "meanless")


@pytest.fixture(autouse=True)
def forget_own_families():
    """The registry is the process's: what a test registers is forgotten after it."""
    yield
    for name in OWN:
        if name in LIKELIHOODS:
            LIKELIHOODS.unregister(name)


def _laplace(name: str, **register):
    """A Laplace family class registered as ``name`` (a new class object at each call, as a
    notebook cell run again makes)."""

    @LIKELIHOODS.register(name, **register)
    class Laplace(Likelihood):
        def dists(self, out, cells=None):
            return [
                masked_event(dist.Laplace(out[..., i, :], 1.0), cells, i)
                for i in range(out.shape[-2])
            ]

        def mean(self, out):
            return out

    return Laplace


def test_the_same_definition_run_again_replaces_it():
    first, again = _laplace("laplace-rerun"), _laplace("laplace-rerun")
    assert first is not again and LIKELIHOODS.get("laplace-rerun") is again


def test_another_class_under_a_taken_name_is_refused_unless_it_replaces():
    _laplace("laplace-taken")

    class Other(Likelihood):
        pass

    with pytest.raises(ValueError, match=r"registered twice .*replace=True"):
        LIKELIHOODS.register("laplace-taken")(Other)
    LIKELIHOODS.register("laplace-taken", replace=True)(Other)
    assert LIKELIHOODS.get("laplace-taken") is Other
    LIKELIHOODS.unregister("laplace-taken")
    assert "laplace-taken" not in LIKELIHOODS
    with pytest.raises(ValueError, match="unknown likelihood 'laplace-taken'"):
        LIKELIHOODS.unregister("laplace-taken")


def test_a_family_without_a_mean_is_refused_when_the_model_is_built():
    @LIKELIHOODS.register("meanless")
    class Meanless(Likelihood):
        def dists(self, out, cells=None):
            return [dist.Normal(out[..., i, :], 1.0).to_event(1) for i in range(out.shape[-2])]

    data = {"a": np.random.default_rng(0).standard_normal((20, 2))}
    with pytest.raises(ValueError, match=r"'meanless' \(Meanless\) defines no mean"):
        FactVAE(lam=0.1, latent_dim=2, likelihood="meanless").fit(data, epochs=1, progress=False)
