import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive, Trace_ELBO, TraceMeanField_ELBO

from pyro_factvae import GroupedData, Guide, Layout, Model, ModelConfig, Optimizers, collapse
from pyro_factvae.module.nets import GroupedLinear, grouped_matmul
from pyro_factvae.module.priors import column_norms


def make(num_data=40, lam=1.0, dims=(3, 3, 2), liks=("normal", "normal", "normal")):
    layout = Layout(tuple(f"g{i}" for i in range(len(dims))), dims, liks)
    config = ModelConfig(
        latent_dim=4,
        encoder_width=5,
        decoder_width=6,
        decoder_hidden=(7,),
        encoder_hidden=(8,),
        baseline=10.0,
        lam=lam,
        num_data=num_data,
    )
    model = Model(layout, config)
    guide = Guide(model)
    return model, guide


def batch(groups):
    data = GroupedData(list(groups.values()))
    return data[torch.arange(len(data))]


def test_layout_groups_blocks_by_width_and_likelihood():
    liks = ("normal", "normal", "normal", "bernoulli")
    lay = Layout(("a", "b", "c", "d"), (3, 2, 3, 3), liks, pad=False)
    assert [b.groups for b in lay.blocks] == [(0, 2), (1,), (3,)]
    # padded (the default): the normal groups share one block, 3 wide
    lay = Layout(("a", "b", "c", "d"), (3, 2, 3, 3), liks)
    assert [(b.groups, b.dim, b.widths) for b in lay.blocks] == [
        ((1, 0, 2), 3, (2, 3, 3)),
        ((3,), 3, (3,)),
    ]
    with pytest.raises(ValueError, match="unknown likelihood 'zero_inflated_gamma'"):
        Layout(("a",), (3,), ("zero_inflated_gamma",))


def test_site_names_and_shapes(groups):
    model, guide = make()
    xs, mask = batch(groups)
    tr = poutine.trace(model).get_trace(xs, mask)
    assert tr.nodes["z"]["value"].shape == (40, 4)
    for g in ("g0", "g1", "g2"):
        assert tr.nodes[f"Phi_{g}"]["value"].shape == (model.config.phi_rows, 4)
        assert tr.nodes[f"gamma_sq_{g}"]["value"].shape == (4,)
        assert tr.nodes[f"x_{g}"]["is_observed"]
    assert tr.nodes["theta_prior"]["type"] == "sample"
    gtr = poutine.trace(guide).get_trace(xs, mask)
    assert {n for n, s in gtr.nodes.items() if s["type"] == "sample" and n != "data"} == {
        "z",
        "Phi_g0",
        "Phi_g1",
        "Phi_g2",
        "gamma_sq_g0",
        "gamma_sq_g1",
        "gamma_sq_g2",
    }


def test_prior_predictive_draws_through_explicit_sites(groups):
    model, _ = make()
    xs, mask = batch(groups)
    pred = Predictive(model, num_samples=3)(xs, torch.ones_like(mask))
    # Predictive pads global sites with the data plate's dim: (samples, 1, ...)
    assert pred["gamma_sq_g0"].squeeze(1).shape == (3, 4)
    assert pred["Phi_g1"].squeeze(1).shape == (3, model.config.phi_rows, 4)
    assert torch.all(pred["gamma_sq_g0"] > 0)
    # with no data, the x sites are simulated through the explicit prior sites
    sim = Predictive(model, num_samples=2)(None, batch_size=5)
    assert sim["x_g2"].shape == (2, 5, 2) and torch.isfinite(sim["x_g2"]).all()
    with pytest.raises(ValueError, match="mask or batch_size"):
        model(None)
    # conditioning a Phi column to zero disconnects that latent from the group
    phi = torch.randn(model.config.phi_rows, 4)
    phi[:, 2] = 0.0
    cond = poutine.condition(model, {"Phi_g0": phi})
    tr = poutine.trace(cond).get_trace(xs, mask)
    assert torch.equal(tr.nodes["Phi_g0"]["value"], phi)


def _loss_and_grads(model, guide, xs, mask, enc_mask=None):
    pyro.set_rng_seed(0)
    loss = TraceMeanField_ELBO().differentiable_loss(
        collapse(model), collapse(guide), xs, mask, enc_mask
    )
    params = list(model.parameters()) + list(guide.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return loss, [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_values_under_missing_groups_change_no_output_and_no_gradient(groups):
    model, guide = make()
    xs, mask = batch(groups)
    loss1, grads1 = _loss_and_grads(model, guide, xs, mask)
    garbage = [x.clone() for x in xs]
    for g, x in enumerate(garbage):
        x[~mask[:, g]] = float("nan")
    garbage[1][~mask[:, 1]] = 1e30
    loss2, grads2 = _loss_and_grads(model, guide, garbage, mask)
    assert torch.isfinite(loss1)
    assert torch.equal(loss1, loss2)
    for a, b in zip(grads1, grads2):
        assert torch.equal(a, b)
    # the encoder posterior is untouched as well
    with torch.no_grad():
        p1 = guide.posterior(xs, mask)
        p2 = guide.posterior(garbage, mask)
    assert torch.equal(p1[0], p2[0]) and torch.equal(p1[1], p2[1])


def test_encoder_mask_only_affects_guide(groups):
    model, guide = make()
    xs, mask = batch(groups)
    keep = torch.zeros_like(mask)
    keep[:, 0] = True
    with torch.no_grad():
        loc, scale = guide.posterior(xs, mask & keep)
        only0 = guide.posterior([xs[0], xs[1] * 0 + 5, xs[2] * 0 - 3], mask & keep)
    assert torch.equal(loc, only0[0])
    assert torch.all(scale[~mask[:, 0]] == 1)  # nothing fed: prior


def test_collapse_masks_exactly_the_prior_sites(groups):
    model, guide = make()
    xs, mask = batch(groups)
    guide_tr = poutine.trace(collapse(guide)).get_trace(xs, mask)
    tr = poutine.trace(poutine.replay(collapse(model), guide_tr)).get_trace(xs, mask)
    tr.compute_log_prob()
    for g in ("g0", "g1", "g2"):
        assert tr.nodes[f"Phi_{g}"]["log_prob_sum"] == 0
        # gamma_sq is integrated out: in neither trace
        assert f"gamma_sq_{g}" not in tr.nodes and f"gamma_sq_{g}" not in guide_tr.nodes
    assert tr.nodes["x_g0"]["log_prob_sum"] != 0
    # the Phi value still flows from the guide to the model
    assert torch.equal(tr.nodes["Phi_g1"]["value"], guide_tr.nodes["Phi_g1"]["value"])
    full_guide = poutine.trace(guide).get_trace(xs, mask)
    full = poutine.trace(poutine.replay(model, full_guide)).get_trace(xs, mask)
    full.compute_log_prob()
    assert full.nodes["Phi_g0"]["log_prob_sum"] != 0
    assert full.nodes["gamma_sq_g0"]["log_prob_sum"] != 0


def test_proximal_optim_drives_a_plain_pyro_elbo(groups):
    xs, mask = batch(groups)
    results = {}
    for lam in (0.0, 50.0):
        pyro.set_rng_seed(0)
        model, guide = make(lam=lam)
        scale = 1.0 / 40
        elbo = Trace_ELBO()
        opts = Optimizers(model, guide, lr=0.01, phi_lr=0.05, phi_optim="adam")
        opts.set_lam(lam)
        losses = []
        for _ in range(60):
            loss = elbo.differentiable_loss(
                poutine.scale(collapse(model), scale),
                poutine.scale(collapse(guide), scale),
                xs,
                mask,
            )
            loss.backward()
            opts.step()
            opts.zero_grad()
            losses.append(float(loss.detach()))
        assert all(torch.isfinite(torch.tensor(losses)))
        results[lam] = torch.cat([column_norms(p.detach()).flatten() for p in guide.Phi])
    assert torch.all(results[0.0] > 0)
    assert torch.any(results[50.0] == 0)


def test_grouped_linear_matches_separate_linears():
    torch.manual_seed(0)
    layer = GroupedLinear(3, 4, 2)
    x = torch.randn(5, 3, 4)
    out = layer(x)
    for g in range(3):
        torch.testing.assert_close(out[:, g], x[:, g] @ layer.weight[g] + layer.bias[g])


def test_grouped_matmul_gives_einsums_sums_bit_for_bit_with_gradients():
    torch.manual_seed(0)
    weight = torch.randn(3, 4, 2, requires_grad=True)
    for shape in [(5, 3, 4), (7, 5, 3, 4)]:  # a minibatch (bmm); with sample dims (einsum)
        x = torch.randn(*shape, requires_grad=True)
        out = grouped_matmul(x, weight)
        ref = torch.einsum("...gi,gio->...go", x, weight)
        assert out.shape == ref.shape and torch.equal(out, ref)
        grads = torch.autograd.grad(out.square().sum(), (x, weight))
        ref_grads = torch.autograd.grad(ref.square().sum(), (x, weight))
        assert all(torch.equal(a, b) for a, b in zip(grads, ref_grads))


def test_a_decoder_of_many_groups_gives_each_groups_own_generator_and_gradients():
    from pyro_factvae.module.nets import GROUP_MAJOR_ABOVE, BlockDecoder

    torch.manual_seed(0)
    for groups in (3, GROUP_MAJOR_ABOVE + 5):  # activations row-major, and group-major
        dec = BlockDecoder(groups, 2, width=4, hidden=[3])
        z = torch.randn(6, 5)
        w = torch.randn(groups, 4, 5, requires_grad=True)
        out = dec(z, w)
        first, last = dec.net[1][0], dec.net[1][2]
        for g in range(groups):  # f_g(W_g z) of eq 5, one group at a time
            a = torch.relu(z @ w[g].T + dec.shift[g])
            h = torch.relu(a @ first.weight[g] + first.bias[g])
            torch.testing.assert_close(out[:, g], h @ last.weight[g] + last.bias[g])
        grads = torch.autograd.grad(out.square().sum(), (w, last.weight))
        ref = torch.stack(
            [
                torch.relu(torch.relu(z @ w[g].T + dec.shift[g]) @ first.weight[g] + first.bias[g])
                @ last.weight[g]
                + last.bias[g]
                for g in range(groups)
            ],
            1,
        )
        ref_grads = torch.autograd.grad(ref.square().sum(), (w, last.weight))
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b)


def test_bernoulli_likelihood_site(groups):
    model, guide = make(dims=(3, 3, 2), liks=("normal", "bernoulli", "normal"))
    xs, mask = batch(groups)
    xs[1] = (xs[1] > 0).float()
    tr = poutine.trace(model).get_trace(xs, mask)
    fn = tr.nodes["x_g1"]["fn"]
    while not isinstance(fn, dist.Bernoulli):
        fn = fn.base_dist
    assert isinstance(fn, dist.Bernoulli)


def test_bad_batch_shapes_raise(groups):
    model, guide = make()
    xs, mask = batch(groups)
    with pytest.raises(ValueError, match="expected 3 groups"):
        model(xs[:2], mask)
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        guide(xs, mask.float())
    with pytest.raises(ValueError, match="enc_mask must be a bool tensor"):
        guide(xs, mask, mask.float())
    with pytest.raises(ValueError, match="enc_mask must have mask's shape"):
        guide(xs, mask, mask[:3])
    with pytest.raises(ValueError, match=r"group 'g2': expected shape \(40, 2\)"):
        model([xs[0], xs[1], xs[2][:, :1]], mask)


@pytest.mark.parametrize("collapsed", [True, False])
def test_elbo_terms_sum_to_pyros_mean_field_loss(groups, collapsed):
    from pyro_factvae.infer.elbo import elbo_terms

    model, guide = make()
    xs, mask = batch(groups)
    wrap = collapse if collapsed else (lambda fn: fn)
    scaled = [poutine.scale(wrap(fn), 1 / 40) for fn in (model, guide)]
    pyro.set_rng_seed(3)
    terms = elbo_terms(*scaled, xs, mask)
    pyro.set_rng_seed(3)
    expected = TraceMeanField_ELBO().differentiable_loss(*scaled, xs, mask)
    torch.testing.assert_close(sum(terms.values()), expected)
    assert {"KL of z", "theta prior", "likelihood of group 'g0'"} <= set(terms)
    assert (float(terms["group-lasso prior"]) == 0.0) == collapsed
