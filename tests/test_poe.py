import math

import torch

from pyro_factvae import product_of_experts


def _brute_force(mu, prec, mask, grid):
    """Product of N(0,1) and the kept 1-D expert densities, normalised on a grid."""
    logp = -0.5 * grid**2
    for m, p, keep in zip(mu, prec, mask):
        if keep:
            logp = logp - 0.5 * p * (grid - m) ** 2
    w = torch.softmax(logp, 0)
    mean = (w * grid).sum()
    return mean, ((w * (grid - mean) ** 2).sum()).sqrt()


def test_poe_matches_brute_force_product_of_densities():
    torch.manual_seed(0)
    g, k = 4, 3
    mu = torch.randn(g, k, dtype=torch.float64) * 2
    prec = torch.rand(g, k, dtype=torch.float64) * 5
    mask = torch.tensor([True, False, True, True])
    loc, scale = product_of_experts(mu, prec, mask)
    grid = torch.linspace(-12, 12, 200001, dtype=torch.float64)
    for j in range(k):
        m, s = _brute_force(mu[:, j], prec[:, j], mask, grid)
        assert math.isclose(loc[j].item(), m.item(), abs_tol=1e-6)
        assert math.isclose(scale[j].item(), s.item(), rel_tol=1e-5)


def test_left_out_experts_are_ignored_even_if_not_finite():
    mu = torch.tensor([[1.0, 2.0], [float("nan"), float("inf")]])
    prec = torch.tensor([[2.0, 3.0], [float("inf"), float("nan")]])
    mask = torch.tensor([True, False])
    loc, scale = product_of_experts(mu, prec, mask)
    torch.testing.assert_close(loc, torch.tensor([2 / 3, 6 / 4]))
    torch.testing.assert_close(scale, torch.tensor([3.0, 4.0]).rsqrt())


def test_no_expert_gives_prior_and_zero_precision_is_uninformative():
    mu = torch.randn(5, 3, 2)
    prec = torch.rand(5, 3, 2)
    loc, scale = product_of_experts(mu, prec, torch.zeros(5, 3, dtype=torch.bool))
    assert torch.all(loc == 0) and torch.all(scale == 1)
    # an expert with zero precision on a latent says nothing about it
    prec[:, 0, 1] = 0
    full = product_of_experts(mu, prec, torch.ones(5, 3, dtype=torch.bool))
    mu2 = mu.clone()
    mu2[:, 0, 1] = 100.0
    other = product_of_experts(mu2, prec, torch.ones(5, 3, dtype=torch.bool))
    torch.testing.assert_close(full[0][:, 1], other[0][:, 1])


def test_more_experts_never_increase_variance():
    torch.manual_seed(1)
    mu, prec = torch.randn(3, 4), torch.rand(3, 4)
    scales = [product_of_experts(mu, prec, torch.arange(3) < n)[1] for n in range(4)]
    for a, b in zip(scales, scales[1:]):
        assert torch.all(b <= a)


def test_mixture_of_experts_is_uniform_over_given_single_group_products():
    from pyro_factvae.module.experts import mixture_of_experts

    torch.manual_seed(0)
    mu, prec = torch.randn(3, 4, 2), torch.rand(3, 4, 2) * 3
    mask = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=torch.bool)
    q = mixture_of_experts(mu, prec, mask)
    z = torch.randn(5, 3, 2)
    want = []
    for i in range(3):
        comps = []
        for g in mask[i].nonzero().squeeze(-1).tolist():
            one = slice(g, g + 1)
            loc, scale = product_of_experts(mu[i, one], prec[i, one], mask[i, one])
            comps.append(torch.distributions.Normal(loc, scale).log_prob(z[:, i]).sum(-1))
        if not comps:  # no group: the prior
            comps.append(torch.distributions.Normal(0.0, 1.0).log_prob(z[:, i]).sum(-1))
        want.append(torch.logsumexp(torch.stack(comps), 0) - torch.log(torch.tensor(len(comps))))
    torch.testing.assert_close(q.log_prob(z), torch.stack(want, -1))


def test_expand_experts_weights_each_row_once():
    from pyro_factvae.module.experts import expand_experts

    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 1, 0]], dtype=torch.bool)
    enc = torch.tensor([[1, 1, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.bool)  # row 2: none given
    rows, one_hot, weight = expand_experts(mask, enc)
    assert rows.tolist() == [0, 0, 0, 1, 2]
    assert one_hot.sum(-1).tolist() == [1, 1, 1, 1, 0]  # row 2 falls back to the prior
    assert not bool((one_hot & ~mask[rows]).any())
    # the plate scales by N / B'; times weight, every source row sums to N / B
    per_row = torch.zeros(3).index_add_(0, rows, weight / len(rows))
    torch.testing.assert_close(per_row, torch.full((3,), 1 / 3))


def test_the_finite_product_leaves_experts_out_by_zero_weight_and_matches_the_selection():
    torch.manual_seed(0)
    mu, prec = torch.randn(6, 4, 3), torch.rand(6, 4, 3) * 3
    mask = torch.rand(6, 4) < 0.6
    mask[0] = False  # a row with no expert: the prior
    mask[1] = torch.tensor([True, False, True, False])
    for a, b in zip(product_of_experts(mu, prec, mask), product_of_experts(mu, prec, mask, True)):
        assert torch.equal(a, b)
    # a non-finite left-out expert: selected away by default, non-finite when taken as finite
    mu[1, ~mask[1]] = float("nan")
    assert product_of_experts(mu, prec, mask)[0][1].isfinite().all()
    assert not product_of_experts(mu, prec, mask, finite=True)[0][1].isfinite().all()
