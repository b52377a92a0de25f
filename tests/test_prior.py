import math

import pyro.distributions as dist
import pytest
import torch

from pyro_factvae import ProximalOptim, prox_group_lasso
from pyro_factvae.module.priors import (
    column_norms,
    conditional_mode,
    gamma_sq_prior,
    log_marginal,
    phi_prior,
)


def _closed_form(c, a, lam):
    """argmin_x sum_j a_j/2 ||x_j - c_j||^2 + lam ||x_j||: shrink each column of c."""
    norms = column_norms(c)
    return c * torch.clamp(1 - lam / (a * norms), min=0).unsqueeze(-2)


@pytest.mark.parametrize("phi_optim, lr, steps", [("sgd", 0.2, 400), ("adam", 0.05, 3000)])
def test_proximal_optim_solves_group_lasso_quadratic(phi_optim, lr, steps):
    torch.manual_seed(0)
    m, k, lam = 5, 6, 1.0
    c = torch.randn(2, m, k) * torch.tensor([0.1, 0.2, 0.3, 1.0, 2.0, 3.0])
    a = torch.tensor([1.0, 2.0, 4.0, 1.0, 2.0, 4.0])  # per-column curvature
    expected = _closed_form(c, a, lam)
    assert (column_norms(expected) == 0).any() and (column_norms(expected) > 0).any()
    phi = torch.nn.Parameter(torch.zeros(2, m, k))
    opt = ProximalOptim([phi], lr=lr, lam=lam, method=phi_optim)
    for _ in range(steps):
        loss = (0.5 * a * (phi - c).square().sum(-2)).sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
    torch.testing.assert_close(phi.detach(), expected, atol=2e-4, rtol=1e-3)
    # the zero columns are exactly zero, not merely small
    assert torch.equal(column_norms(phi.detach()) == 0, column_norms(expected) == 0)


def test_prox_operator_closed_form_and_exact_zeros():
    phi = torch.tensor([[3.0, 0.1, 0.0], [4.0, 0.1, 0.0]])
    out = prox_group_lasso(phi, 1.0)
    torch.testing.assert_close(out[:, 0], torch.tensor([3.0, 4.0]) * (4 / 5))
    assert torch.all(out[:, 1:] == 0)
    torch.testing.assert_close(prox_group_lasso(phi, 0.0), phi)
    with pytest.raises(ValueError):
        prox_group_lasso(phi, -1.0)


def test_proximal_optim_is_a_torch_optimizer_with_state_and_schedules():
    phi = torch.nn.Parameter(torch.ones(2, 2))
    opt = ProximalOptim([phi], lr=0.1, lam=0.0, method="sgd")
    phi.sum().backward()
    opt.step()
    torch.testing.assert_close(phi.detach(), torch.full((2, 2), 0.9))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5**step)
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    adam = ProximalOptim([phi], lr=0.1, lam=1.0)
    phi.grad = torch.ones(2, 2)
    adam.step()
    state = adam.state_dict()
    assert state["state"][0]["step"] == 1 and state["param_groups"][0]["lam"] == 1.0
    with pytest.raises(ValueError, match="lam"):
        ProximalOptim([phi], lam=-1.0)
    with pytest.raises(ValueError, match="method"):
        ProximalOptim([phi], method="lbfgs")


def test_proximal_optim_penalty_is_the_weighted_group_lasso_term_it_minimises():
    a = torch.nn.Parameter(torch.tensor([[3.0, 0.0], [4.0, 1.0]]))  # column norms 5, 1
    b = torch.nn.Parameter(torch.tensor([[0.0, 2.0]]))  # column norms 0, 2
    opt = ProximalOptim([{"params": [a], "weight": 2.0}, {"params": [b]}], lam=0.5)
    assert opt.penalty() == pytest.approx(0.5 * 2.0 * (5 + 1) + 0.5 * 2)
    for group in opt.param_groups:  # the relaxed refit shrinks nothing
        group["relaxed"] = True
    assert opt.penalty() == 0.0
    assert ProximalOptim([a], lam=0.0).penalty() == 0.0


def test_optimizers_split_phi_from_theta_by_object():
    from pyro_factvae import Guide, Layout, Model, ModelConfig, Optimizers

    layout = Layout(("a", "b"), (3, 3), ("normal", "normal"))
    model = Model(layout, ModelConfig(latent_dim=2, num_data=10))
    guide = Guide(model)
    opts = Optimizers(model, guide, lr=0.1, phi_lr=0.2, phi_optim="adam")
    phi_ids = {id(p) for g in opts.phi.param_groups for p in g["params"]}
    theta_ids = {id(p) for g in opts.theta.param_groups for p in g["params"]}
    assert phi_ids == {id(p) for p in guide.Phi}
    assert not phi_ids & theta_ids
    assert len(phi_ids) + len(theta_ids) == len(
        {id(p) for p in [*model.parameters(), *guide.parameters()]}
    )


def test_log_marginal_matches_integral_over_gamma():
    torch.manual_seed(0)
    m, k, lam = 3, 2, 1.5
    phi = torch.randn(m, k, dtype=torch.float64)
    gam = dist.Gamma(torch.tensor(0.5 * (m + 1), dtype=torch.float64), 0.5 * lam**2)
    g = gam.sample((400000, k))
    logp = dist.Normal(0.0, g.sqrt().unsqueeze(-2)).log_prob(phi).sum(-2)  # (S, k)
    mc = (torch.logsumexp(logp, 0) - math.log(len(g))).sum()
    assert math.isclose(log_marginal(phi, lam).item(), mc.item(), abs_tol=0.02)


def test_conditional_mode_maximises_conditional_density():
    phi = torch.tensor([[0.5, 0.0], [1.0, 0.0], [-0.2, 0.0]], dtype=torch.float64)
    lam, m = 2.0, 3
    mode = conditional_mode(phi, lam)
    grid = torch.linspace(1e-4, 5, 200000, dtype=torch.float64)
    logp = gamma_sq_prior(m, 1, lam).base_dist.log_prob(grid) + dist.Normal(
        0.0, grid.sqrt().unsqueeze(-1)
    ).log_prob(phi[:, 0]).sum(-1)
    assert math.isclose(mode[0].item(), grid[logp.argmax()].item(), rel_tol=1e-3)
    assert mode[1].item() == 0.0
    assert phi_prior(mode.clamp_min(1e-12), m).event_shape == (m, 2)


def test_training_schedule_warms_lam_up_and_decays_steps():
    from pyro_factvae.infer.loop import cosine, lam_factor

    assert lam_factor(0, 10) == 0.1 and cosine(100, 0.05)(0) == 1.0
    assert lam_factor(9, 10) == 1.0 and lam_factor(50, 10) == 1.0
    assert abs(cosine(100, 0.05)(99) - 0.05) < 1e-12
    assert lam_factor(5, 0) == 1.0 and cosine(100, 1.0)(5) == 1.0


def _gig_half_cdf(a, b, grid):
    """CDF of GIG(1/2, a, b) on ``grid`` from its unnormalised density, by quadrature."""
    log_p = -0.5 * torch.log(grid) - 0.5 * (a * grid + b / grid)
    w = torch.exp(log_p - log_p.max()) * torch.gradient(grid)[0]
    return torch.cumsum(w, 0) / w.sum()


@pytest.mark.parametrize("norm", [0.05, 1.0, 4.0])
def test_conditional_sample_matches_the_unnormalised_gig_density(norm):
    from pyro_factvae.module.priors import conditional_sample

    lam = 2.0
    phi = torch.zeros(3, 1, dtype=torch.float64)
    phi[0, 0] = norm
    gen = torch.Generator().manual_seed(0)
    draws = conditional_sample(phi, lam, 40000, gen)[:, 0].sort().values
    grid = torch.logspace(-8, 3, 200001, dtype=torch.float64)
    cdf = _gig_half_cdf(lam**2, norm**2, grid)
    empirical = torch.searchsorted(draws, grid).double() / len(draws)
    assert (empirical - cdf).abs().max() < 0.015  # KS distance; 0.0068 is the 1% level
    # closed-form mean of GIG(1/2, a, b): sqrt(b/a) (1 + 1/sqrt(ab))
    mean = norm / lam * (1 + 1 / (lam * norm))
    assert draws.mean().item() == pytest.approx(mean, rel=0.03)


def test_conditional_sample_of_a_pruned_column_is_the_gamma_limit():
    from pyro_factvae.module.priors import conditional_sample

    draws = conditional_sample(torch.zeros(2, 3), 2.0, 50000, torch.Generator().manual_seed(1))
    assert draws.shape == (50000, 3)
    # Gamma(1/2, rate 2): mean 1/4, variance 1/8
    assert draws.mean().item() == pytest.approx(0.25, rel=0.03)
    assert draws.var().item() == pytest.approx(0.125, rel=0.06)
    with pytest.raises(ValueError, match="lam > 0"):
        conditional_sample(torch.zeros(2, 3), 0.0, 5)


def test_a_column_without_a_gradient_yet_takes_the_plain_prox_step_under_adam():
    phi = torch.nn.Parameter(torch.tensor([[1.0, 5.0], [0.0, 0.0]]))
    opt = ProximalOptim([phi], lr=0.1, lam=0.2)
    phi.grad = torch.tensor([[0.0, 1.0], [0.0, 1.0]])  # column 0: its group in no row yet
    opt.step()
    # Algorithm 1's plain step: shrunk by lr * lam, not zeroed by the threshold lr * lam / eps
    assert float(phi[0, 0]) == pytest.approx(1.0 - 0.1 * 0.2)
    assert 0 < column_norms(phi.detach())[1] < 5.0  # the other column shrinks as before
    for _ in range(60):  # a column that never gets a gradient still shrinks to zero
        phi.grad = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
        opt.step()
    assert float(phi[0, 0]) == 0.0
