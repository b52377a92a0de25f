"""Groups of different widths share a zero-padded block: the same model as unpadded blocks."""

import json

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData, Guide, Layout, Model, ModelConfig
from pyro_factvae.infer.objective import CollapsedELBO
from pyro_factvae.infer.optim import Optimizers
from pyro_factvae.layout import PAD_LIMIT

LIKS = ("normal", "normal", "bernoulli", "normal", "categorical", "bernoulli")
DIMS = (4, 2, 3, 5, 3, 1)


def test_groups_of_one_paddable_likelihood_share_a_block_while_padding_is_bounded():
    lay = Layout(tuple("abcdef"), DIMS, LIKS)
    got = {(b.likelihood, b.groups, b.dim, b.widths) for b in lay.blocks}
    assert got == {
        ("normal", (1, 0, 3), 5, (2, 4, 5)),
        ("bernoulli", (5, 2), 3, (1, 3)),
        ("categorical", (4,), 3, (3,)),  # a one-hot label is never padded
    }
    # without padding: one block per width and likelihood, as model files before it
    plain = Layout(tuple("abcdef"), DIMS, LIKS, pad=False)
    assert all(not b.padded for b in plain.blocks) and len(plain.blocks) == 6
    # a narrow group beside a wide one would more than double the cells: its own block
    wide = Layout(("n", "m", "w"), (1, 1, 10), ("normal", "normal", "normal"))
    assert [b.groups for b in wide.blocks] == [(0, 1), (2,)]
    assert 3 * 10 > PAD_LIMIT * 12


def test_penalty_weights_count_each_groups_own_variables():
    lay = Layout(tuple("abcdef"), DIMS, LIKS)
    weights = dict(zip([b.likelihood for b in lay.blocks], lay.penalty_weights))
    assert weights == {"normal": (2, 4, 5), "bernoulli": (1, 3), "categorical": 1}
    rates = dict(zip([b.likelihood for b in lay.blocks], lay.penalty_rates(2.0)))
    assert torch.equal(rates["normal"], torch.tensor([[4.0], [8.0], [10.0]]))
    assert rates["categorical"] == 2.0


def test_one_padded_block_out_of_the_users_order_scatters_back_into_it():
    lay = Layout(("a", "b", "c"), (3, 2, 3), ("normal",) * 3)
    assert [b.groups for b in lay.blocks] == [(1, 0, 2)]
    per_block = torch.tensor([[[1.0], [0.0], [2.0]]])  # (B, G_b, 1) in block order
    assert lay.scatter_axis([per_block]).flatten().tolist() == [0.0, 1.0, 2.0]


def data(cells: bool, n: int = 30, dims=DIMS, liks=LIKS):
    rng = np.random.default_rng(0)
    groups = {}
    for name, d, lik in zip("abcdef", dims, liks):
        if lik == "normal":
            x = rng.normal(size=(n, d)) * 3 + 1
        elif lik == "bernoulli":
            x = rng.integers(0, 2, size=(n, d)).astype(float)
        else:
            x = np.eye(d)[rng.integers(0, d, n)]
        x[rng.random(n) < 0.2] = np.nan  # missing groups
        if cells and lik != "categorical":
            x[rng.random((n, d)) < 0.2] = np.nan
        groups[name] = x
    empty = np.all([np.isnan(x).all(1) for x in groups.values()], 0)
    groups["a"][empty, 0] = 0.5  # no row may be empty
    return GroupedData(groups)


def build(layout: Layout, grouped: GroupedData, seed: int):
    torch.manual_seed(seed)
    config = ModelConfig(
        latent_dim=3, encoder_width=4, decoder_width=5, lam=0.3, num_data=len(grouped)
    )
    model = Model(layout, config)
    model.init_from_data(grouped.values, grouped.observed, grouped.cells)
    return model, Guide(model)


def copy_into(src_layout, src_state, dst_layout, dst_state):
    """Each group's weights of ``src`` written into its place in ``dst`` (the leading
    sub-box of a padded tensor: a group's own columns come first)."""
    out = {k: v.clone() for k, v in dst_state.items()}
    for key, value in src_state.items():
        parts = key.split(".")
        slot = next((i for i, p in enumerate(parts) if p.isdigit()), None)
        if slot is None:  # shared by all groups
            out[key] = value.clone()
            continue
        b = int(parts[slot])
        for i, g in enumerate(src_layout.blocks[b].groups):
            b2, i2 = dst_layout.locate(g)
            parts[slot] = str(b2)
            target = out[".".join(parts)]
            box = (i2, *(slice(0, s) for s in value[i].shape))
            target[box] = value[i]
    return out


ONE_BLOCK = ((3, 2, 3, 1), ("normal",) * 4)  # one padded block, out of the user's order


@pytest.mark.parametrize("shape", [(DIMS, LIKS), ONE_BLOCK], ids=["blocks", "one-block"])
@pytest.mark.parametrize("cells", [False, True], ids=["groups", "cells"])
def test_a_padded_block_scores_and_predicts_as_the_unpadded_groups(cells, shape):
    dims, liks = shape
    grouped = data(cells, dims=dims, liks=liks)
    plain = Layout(grouped.names, grouped.dims, liks, pad=False)
    padded = Layout(grouped.names, grouped.dims, liks)
    assert len(padded.blocks) < len(plain.blocks)
    model0, guide0 = build(plain, grouped, 0)
    model1, guide1 = build(padded, grouped, 1)
    model1.load_state_dict(copy_into(plain, model0.state_dict(), padded, model1.state_dict()))
    guide1.load_state_dict(copy_into(plain, guide0.state_dict(), padded, guide1.state_dict()))
    rows = torch.arange(len(grouped))
    noise = torch.randn(len(grouped), 3)
    losses = []
    for model, guide in ((model0, guide0), (model1, guide1)):
        objective = CollapsedELBO(model, guide, grouped, 1.0 / len(grouped))
        blocks, mask, cell_mask = objective.batch(rows)
        terms = objective(blocks, mask, noise=noise, cells=cell_mask)
        losses.append(terms.named())
    for key in losses[0]:
        assert torch.allclose(losses[0][key], losses[1][key], rtol=1e-5, atol=1e-4), key
    # per-group scores, means, units and the Pyro program's sites
    xs, mask = grouped[rows]
    z = torch.randn(len(grouped), 3)
    lls = [
        m.log_likelihoods(xs, mask, z, list(g.Phi), grouped.cells)
        for m, g in ((model0, guide0), (model1, guide1))
    ]
    assert torch.allclose(lls[0], lls[1], rtol=1e-5, atol=1e-4)
    means = [m.means(z, list(g.Phi)) for m, g in ((model0, guide0), (model1, guide1))]
    for a, b, d in zip(*means, dims):
        assert a.shape == b.shape == (len(grouped), d)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(model0.units(), model1.units()):
        assert torch.equal(a, b)
    from pyro import poutine

    trace = poutine.trace(model1).get_trace(xs, mask, cells=grouped.cells)
    for name, d in zip(grouped.names, dims):
        assert trace.nodes[f"x_{name}"]["fn"].event_shape[-1] == d


def test_the_prox_weights_each_group_of_a_padded_block_by_its_own_width():
    grouped = data(False)
    padded = Layout(grouped.names, grouped.dims, LIKS)
    model, guide = build(padded, grouped, 0)
    opt = Optimizers(model, guide, lr=1e-2, phi_lr=0.5, phi_optim="sgd")
    opt.set_lam(0.05)
    for phi in guide.Phi:
        with torch.no_grad():
            phi.copy_(torch.ones_like(phi))  # every column of norm sqrt(m)
        phi.grad = torch.zeros_like(phi)
    opt.phi.step()
    total = 0.0
    for phi, weight in zip(guide.Phi, padded.penalty_weights):
        m, k = phi.shape[-2:]
        weights = weight if isinstance(weight, tuple) else (weight,) * len(phi)
        # the soft-threshold of each group's columns: eta * lam * its own variables
        expected = torch.tensor([max(m**0.5 - 0.5 * 0.05 * w, 0.0) for w in weights])
        norms = phi.detach().norm(dim=-2)
        assert torch.allclose(norms, expected.unsqueeze(-1).expand(-1, k), atol=1e-5)
        total += float(sum(w * 0.05 * e * k for w, e in zip(weights, expected)))
    assert opt.phi.penalty() == pytest.approx(total, rel=1e-5)


def test_a_model_file_without_padded_blocks_loads_and_predicts_as_written(tmp_path):
    grouped = data(False, n=60)
    # a fit as before padding: one block per width
    vae = FactVAE(lam=0.1, latent_dim=3)
    vae.fit_state.pad = False
    vae.fit(grouped, epochs=3, progress=False)
    assert not vae.layout_.pad
    path = tmp_path / "old.pt"
    vae.save(path)
    payload = torch.load(path, weights_only=False)
    meta = json.loads(payload["meta"])
    del meta["layout"]["pad"]  # files written before padding do not say
    meta["format_version"] = 2
    payload["meta"] = json.dumps(meta)
    torch.save(payload, path)
    loaded = FactVAE.load(path)
    assert len(loaded.layout_.blocks) == len(vae.layout_.blocks)
    a, b = vae.impute(grouped), loaded.impute(grouped)
    for x, y in zip(a.values(), b.values()):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    # a state started afresh from it (as lam="auto" does for a fresh dense fit) keeps its
    # blocks, so the fresh weights fit the loaded model
    fresh = loaded.fit_state.fresh(lam=0.0)
    assert fresh.layout_of(grouped).blocks == loaded.layout_.blocks


def test_a_model_file_reads_back_into_its_own_blocks_whatever_the_padding_rule(
    tmp_path, monkeypatch
):
    grouped = data(True, n=60)
    vae = FactVAE(lam=0.1, latent_dim=3).fit(grouped, epochs=3, progress=False)
    assert any(b.padded for b in vae.layout_.blocks)
    vae.save(tmp_path / "m.pt")
    meta = json.loads(torch.load(tmp_path / "m.pt", weights_only=False)["meta"])
    assert meta["layout"]["pad"] == [list(groups) for groups in vae.layout_.partition]
    monkeypatch.setattr("pyro_factvae.layout.PAD_LIMIT", 1.0)  # a rule that pads nothing
    assert not any(b.padded for b in Layout(grouped.names, DIMS, LIKS).blocks)
    loaded = FactVAE.load(tmp_path / "m.pt")
    assert loaded.layout_.blocks == vae.layout_.blocks
    a, b = vae.impute(grouped), loaded.impute(grouped)
    for name in grouped.names:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6)
    fresh = loaded.fit_state.fresh(lam=0.0)  # lam="auto"'s fresh dense fit after a resume
    assert fresh.layout_of(grouped).blocks == vae.layout_.blocks


@pytest.mark.parametrize(
    "blocks, message",
    [
        ([[0, 1, 3], [2, 5]], "holding each of the 6 groups once"),
        ([[0, 1, 3], [2, 5, 4], [4]], "holding each of the 6 groups once"),
        ([[0, 1, 3, 2], [5], [4]], "mixes the likelihoods"),
        ([[0, 1, 3], [2, 5], [4, 4]], "holding each"),
        ([[0, 1, 3], [2, 5], [4.0]], "must be lists of group indices"),
        ([[0, 1, 3], [2, 5], [True]], "must be lists of group indices"),
        ([[0, 1, 3], [2, 5], 4], "must be lists of group indices"),
        ([[0, 1, 3], [2, 5], "4"], "must be lists of group indices"),
    ],
)
def test_blocks_given_explicitly_are_checked(blocks, message):
    with pytest.raises(ValueError, match=message):
        Layout(tuple("abcdef"), DIMS, LIKS, pad=blocks)


def test_blocks_given_explicitly_pad_only_a_paddable_likelihood():
    liks = ("normal", "categorical", "categorical")
    with pytest.raises(ValueError, match="'categorical', which is not paddable"):
        Layout(tuple("abc"), (2, 3, 4), liks, pad=[[0], [1, 2]])
    lay = Layout(tuple("abc"), (2, 3, 4), ("normal",) * 3, pad=[[2, 0], [1]])
    assert [(b.groups, b.dim, b.widths) for b in lay.blocks] == [
        ((2, 0), 4, (4, 2)),
        ((1,), 3, (3,)),
    ]
    assert lay.partition == ((2, 0), (1,)) == lay.pad
    # numbers of any numeric type are limits; the same blocks make the same layout
    limit = Layout(tuple("abc"), (2, 3, 4), ("normal",) * 3, pad=np.float32(2.0))
    assert limit == Layout(tuple("abc"), (2, 3, 4), ("normal",) * 3, pad=limit.partition)


def test_pad_below_one_is_refused():
    with pytest.raises(ValueError, match="pad must be True, False or a number >= 1"):
        Layout(("a", "b"), (2, 3), ("normal", "normal"), pad=0.5)


def test_a_custom_paddable_family_without_its_own_log_prob_trains_in_a_padded_block():
    import pyro.distributions as dist

    from pyro_factvae.module.likelihoods import Likelihood, masked_event
    from pyro_factvae.registry import LIKELIHOODS

    @LIKELIHOODS.register("laplace-padded")
    class Laplace(Likelihood):
        paddable = True

        def __init__(self, num_groups, dim, *, widths=None):
            super().__init__(num_groups, dim, widths=widths)
            self.log_b = torch.nn.Parameter(torch.zeros(num_groups, dim))

        def dists(self, out, cells=None):
            b = self.log_b.exp()
            return [
                masked_event(dist.Laplace(out[..., i, :w], b[i, :w]), cells, i, w)
                for i, w in enumerate(self.widths)
            ]

        def mean(self, out):
            return out

    rng = np.random.default_rng(0)
    groups = {"a": rng.laplace(size=(40, 2)), "b": rng.laplace(size=(40, 3))}
    groups["a"][rng.random((40, 2)) < 0.2] = np.nan  # cells missing too
    vae = FactVAE(lam=0.1, latent_dim=2, likelihood="laplace-padded")
    vae.fit(groups, epochs=3, progress=False)
    assert [b.widths for b in vae.layout_.blocks] == [(2, 3)]
    filled = vae.impute(groups)
    assert filled["a"].shape == (40, 2) and np.isfinite(filled["a"]).all()


def test_a_fit_on_groups_of_different_widths_runs_in_padded_blocks_and_round_trips(tmp_path):
    grouped = data(True, n=60)
    vae = FactVAE(lam=0.1, latent_dim=3).fit(grouped, epochs=3, progress=False)
    assert vae.layout_.pad and any(b.padded for b in vae.layout_.blocks)
    vae.save(tmp_path / "m.pt")
    loaded = FactVAE.load(tmp_path / "m.pt")
    assert loaded.layout_.blocks == vae.layout_.blocks
    a, b = vae.impute(grouped), loaded.impute(grouped)
    for name, d in zip(grouped.names, DIMS):
        assert a[name].shape == (60, d)
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6)


def test_a_padded_blocks_networks_start_as_each_groups_own():
    torch.manual_seed(0)
    layout = Layout(("a", "b"), (2, 40), ("normal", "normal"))
    (block,) = layout.blocks
    model = Model(layout, ModelConfig(latent_dim=3, encoder_width=64, decoder_width=8, lam=0.1))
    guide = Guide(model)
    first = guide.encoders[0].features[0]
    last = model.decoders[0].net[1][-1]
    for g, w in enumerate(block.widths):
        own = first.weight[g, :w]
        # nn.Linear's uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the group's own fan-in
        assert 0.9 * w**-0.5 < float(own.abs().max()) <= w**-0.5
        assert float(first.bias[g].abs().max()) <= w**-0.5
        assert not first.weight[g, w:].any()  # the padding's inputs: zero weights
        assert not last.weight[g, :, w:].any() and not last.bias[g, w:].any()
