"""The one-pass collapsed objective equals Pyro's trace of the collapsed model and guide."""

import numpy as np
import pyro
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.infer.objective import CollapsedELBO, TraceELBO, objective_for


def mixed_groups(cells=False):
    rng = np.random.default_rng(0)
    groups = {
        "a": rng.normal(size=(50, 3)),
        "b": rng.normal(size=(50, 3)),
        "c": rng.integers(0, 2, size=(50, 4)).astype(float),
        "lab": np.eye(3)[rng.integers(0, 3, 50)],
    }
    groups["b"][:10] = np.nan
    groups["lab"][5:15] = np.nan
    if cells:  # single missing cells in the normal and bernoulli groups (a label is one cell)
        for name in ("a", "b", "c"):
            holes = rng.random(groups[name].shape) < 0.2
            groups[name][holes] = np.nan
    return groups


def with_counts(cells):
    groups = mixed_groups(cells)
    rng = np.random.default_rng(1)
    groups["n"] = rng.poisson(3.0, size=(50, 4)).astype(float)
    groups["n"][rng.random((50, 4)) < 0.2] = np.nan
    groups["size"] = rng.uniform(0.5, 2.0, size=(50, 1))
    groups["size"][:6] = np.nan  # where the size factor is missing, the counts say
    return groups


@pytest.mark.parametrize(
    "library", [None, "data", {"n": "size"}], ids=["no-counts", "depth-data", "depth-given"]
)
@pytest.mark.parametrize("cells", [False, True], ids=["groups", "cells"])
@pytest.mark.parametrize("inference", ["poe", "mixture"])
def test_collapsed_objective_equals_the_pyro_trace_term_by_term(inference, cells, library):
    if library is not None and inference == "mixture":
        pytest.skip("library sizes are tested with the product of experts")
    liks = {"a": "normal", "b": "normal", "c": "bernoulli", "lab": "categorical"}
    make = mixed_groups
    if library is not None:
        liks, make = {**liks, "n": "poisson"}, with_counts
    vae = FactVAE(
        latent_dim=3,
        lam=0.1,
        likelihood=liks,
        inference=inference,
        group_weight={"lab": 2.0},
        library_size=library,
    ).fit(make(cells), epochs=1, progress=False)
    data = GroupedData(make(cells))
    assert (data.cells is not None) == (cells or library is not None)
    model, guide = vae.model_, vae.guide_
    if cells:  # the missing-cell weights are trained: they change the encoder's output
        assert all(float(enc.missing_weight.abs().sum()) > 0 for enc in guide.encoders[:1])
    fast = CollapsedELBO(model, guide, data, 1 / 50)
    slow = TraceELBO(model, guide, data, 1 / 50, collapsed=True)
    rows = torch.arange(3, 40)
    blocks, mask, fast_cells = fast.batch(rows)
    xs, mask2, slow_cells = slow.batch(rows)
    assert torch.equal(mask, mask2)
    keep = torch.rand(mask.shape, generator=torch.Generator().manual_seed(0)) < 0.7
    with pyro.validation_enabled(False):
        torch.manual_seed(1)
        args, kwargs = guide.experts.training_args(blocks, mask, keep, fast_cells)
        a = fast(*args, **kwargs)
        torch.manual_seed(1)  # the same z draw
        args, kwargs = guide.experts.training_args(xs, mask, keep, slow_cells)
        b = slow(*args, **kwargs)
    torch.testing.assert_close(a.data, b.data, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.prior, b.prior, rtol=1e-6, atol=1e-6)
    named_a, named_b = a.named(), b.named()
    for term, value in named_b.items():
        expected = named_a.get(term, torch.zeros(()))
        torch.testing.assert_close(expected.detach(), value.detach(), rtol=1e-5, atol=1e-5)
    grads_a = torch.autograd.grad(a.loss, list(guide.Phi), retain_graph=True)
    grads_b = torch.autograd.grad(b.loss, list(guide.Phi), retain_graph=True)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


def test_each_posterior_trains_with_its_registered_objective():
    vae = FactVAE(latent_dim=2, lam=0.1, phi_inference="variational")
    vae.fit(mixed_groups(), epochs=1, progress=False)
    data = GroupedData(mixed_groups())
    assert isinstance(objective_for(vae.model_, vae.guide_, "prox", data, 1.0), CollapsedELBO)
    assert isinstance(objective_for(vae.model_, vae.guide_, "variational", data, 1.0), TraceELBO)
    with pytest.raises(ValueError, match="collapsed objective only"):
        CollapsedELBO(vae.model_, vae.guide_, data, 1.0, collapsed=False)
