"""Algorithm 1's split update as a ``pyro.optim`` optimizer, and the collapsed objective.

Collapsed SVI (sec. 2.1) maximises ``L~(theta, Phi)``, the ELBO *without* the group-lasso term,
by stochastic gradients, and applies that term through its proximal operator:

1. ``theta`` (encoders, decoders, everything but ``Phi``): a step of any torch optimizer;
2. ``Phi``: a gradient step ``Phi <- Phi - eta grad`` and then, for every group ``g`` and
   latent ``j``, the group soft-threshold
   ``Phi_.j <- Phi_.j / ||Phi_.j|| * (||Phi_.j|| - eta lam)_+``.

:func:`collapse` takes the explicit prior sites out of the loss, so it is exactly ``-L~``:

* ``gamma_sq_<g>`` is integrated out ("collapsed variational inference over the scale
  parameters", sec. 2.1): the site is hidden from every outer handler (no trace, ELBO or replay
  sees it, as with ``poutine.block``), and its placeholder value is the prior mean;
* ``Phi_<g>`` stays in the trace, so its value still flows from the guide to the model, but its
  distribution is fully masked (``poutine.mask`` semantics: zero log-density in any ELBO). Its
  marginal log-density, ``-lam sum_j ||Phi_.j||`` (eq 9), is what the prox step applies.

Without :func:`collapse` the same model and guide have all their sites, for prior predictive
draws and the full log joint.

Use with a plain :class:`pyro.infer.SVI`::

    svi = SVI(collapse(model), collapse(guide), ProximalOptim(lam=lam), Trace_ELBO())

``lam`` must be in the units of the loss SVI minimises: ``FactVAE`` scales the loss by
``1 / num_data`` (a per-row average), so there ``lam`` is the per-example lambda.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

import pyro
import torch
from pyro.optim import PyroOptim
from pyro.poutine.messenger import Messenger

from .priors import prox_group_lasso

__all__ = ["ProximalOptim", "collapse", "default_is_phi"]


class _CollapseMessenger(Messenger):
    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            return
        name = str(msg["name"])
        if name.startswith("gamma_sq_"):
            # integrated out (sec. 2.1): hidden from outer handlers (no trace, ELBO or replay
            # sees it); its value, the prior mean, only feeds the masked Phi site below
            msg["value"] = msg["fn"].mean
            msg["stop"] = True
        elif name.startswith("Phi_"):
            # a fully masked distribution: zero log-density without evaluating it
            msg["fn"] = msg["fn"].mask(False)


def collapse(fn: Callable) -> Callable:
    """Wrap a model or guide for Algorithm 1: ``gamma_sq_<g>`` hidden, ``Phi_<g>`` masked."""

    def collapsed(*args: Any, **kwargs: Any) -> Any:
        with _CollapseMessenger():
            return fn(*args, **kwargs)

    collapsed.__wrapped__ = fn  # type: ignore[attr-defined]
    return collapsed


def default_is_phi(name: str) -> bool:
    """Param-store names of ``Phi`` blocks: a component equal to ``Phi``.

    Components are separated by ``.`` (attributes) or ``$$$`` (Pyro's module separator), so
    ``"guide.Phi$$$0"`` and ``"guide.Phi"`` match, ``"guide.Phi_scale"`` does not.
    """
    return "Phi" in re.split(r"\.|\$\$\$", name)


class ProximalOptim(PyroOptim):
    """Proximal-gradient optimizer for factVAE (Algorithm 1), usable with ``pyro.infer.SVI``.

    Parameters
    ----------
    optim_constructor : type
        Torch optimizer for ``theta`` (all non-``Phi`` parameters). One instance serves all of
        them (parameters first seen later join it as new param groups).
    optim_args : dict or callable
        Its arguments, or a callable ``param_name -> dict`` for per-parameter arguments.
    lam : float
        Group-lasso weight in the units of the loss (``>= 0``; 0 disables the prox).
    phi_lr : float
        Step size ``eta`` of the ``Phi`` update.
    phi_optim : {"adam", "sgd"}
        ``"sgd"``: Algorithm 1 verbatim, ``Phi_.j <- prox_{eta lam}(Phi_.j - eta grad_.j)``.
        It needs ``eta`` below ``1 / L`` (``L`` the curvature of the loss in ``Phi``), which
        for a VAE with small noise scales means a tiny ``eta`` and many steps.
        ``"adam"`` (default): the same proximal-gradient step in a *column-wise* adaptive
        metric. Each column ``j`` gets its own step ``eta_j = eta / (sqrt(v_j) + eps)``, with
        ``v_j`` a running mean of the column's squared gradient (averaged over its entries),
        and the gradient is replaced by its Adam-style running mean. Because the metric is a
        scalar per column, ``prox_{eta_j lam}`` is still the exact group soft-threshold, and
        the fixed points are exactly those of Algorithm 1 (stationary points of
        ``loss + lam sum_j ||Phi_.j||``): a column is zero iff its gradient norm there is at
        most ``lam``. (Variable-metric proximal gradient, as in Yun, Lozano & Yang 2021.)
    betas, eps : tuple of float, float
        Moment decay rates and denominator floor of ``"adam"``.
    is_phi : callable
        ``param_name -> bool`` selecting the ``Phi`` parameters. Each is a tensor
        ``(..., m, K)`` whose columns ``[..., :, j]`` are the penalised groups.
    clip_args : dict, optional
        As for :class:`pyro.optim.PyroOptim`, applied to ``theta`` gradients.
    """

    def __init__(
        self,
        optim_constructor: type[torch.optim.Optimizer] = torch.optim.Adam,
        optim_args: dict | Callable[[str], dict] | None = None,
        lam: float = 1.0,
        phi_lr: float = 1e-3,
        phi_optim: str = "adam",
        betas: tuple[float, float] = (0.99, 0.999),
        eps: float = 1e-8,
        is_phi: Callable[[str], bool] = default_is_phi,
        clip_args: dict | None = None,
    ) -> None:
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if not phi_lr > 0:
            raise ValueError(f"phi_lr must be > 0, got {phi_lr}")
        if phi_optim not in ("sgd", "adam"):
            raise ValueError(f"phi_optim must be 'sgd' or 'adam', got {phi_optim!r}")
        super().__init__(optim_constructor, optim_args or {"lr": 1e-3}, clip_args)
        self.lam, self.phi_lr, self.phi_optim, self.is_phi = lam, phi_lr, phi_optim, is_phi
        self.betas, self.eps = betas, eps
        self.lr_factor = 1.0
        self._base_phi_lr = phi_lr
        self.theta_optim: torch.optim.Optimizer | None = None
        #: per ``Phi`` name: ``step``, ``exp_avg`` (like Phi), ``exp_avg_sq`` (``(..., 1, K)``)
        self.phi_state: dict[str, dict[str, Any]] = {}
        self._names: dict[torch.Tensor, str] = {}

    def set_base_lr(self, lr: float, phi_lr: float) -> None:
        """Change the initial step sizes (``lr`` for every theta group, and ``phi_lr``)."""
        self._base_phi_lr = phi_lr
        self.pt_optim_args = (
            {**self.pt_optim_args, "lr": lr}
            if isinstance(self.pt_optim_args, dict)
            else self.pt_optim_args
        )
        if self.theta_optim is not None:
            for group in self.theta_optim.param_groups:
                group["initial_lr"] = lr
        self.set_lr_factor(self.lr_factor)

    def set_lr_factor(self, factor: float) -> None:
        """Scale every step size (theta and ``Phi``) to ``factor`` times its initial value."""
        if self.theta_optim is not None:
            for group in self.theta_optim.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor
        self.lr_factor = factor
        self.phi_lr = self._base_phi_lr * factor

    def _name(self, p: torch.Tensor) -> str:
        name = self._names.get(p)
        if name is None:
            name = self._names[p] = pyro.get_param_store().param_name(p)
        return name

    def _args_for(self, name: str) -> dict:
        args = self.pt_optim_args
        return dict(args(name) if callable(args) else args)

    def _groups(self, params: list[torch.Tensor]) -> list[dict]:
        if callable(self.pt_optim_args):
            return [{"params": [p], **self.pt_optim_args(self._name(p))} for p in params]
        return [{"params": params, **self.pt_optim_args}]

    def __call__(self, params: Iterable[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        """One step of Algorithm 1 on the parameters that took part in the loss."""
        params = sorted(params, key=self._name)  # deterministic order
        theta = [p for p in params if not self.is_phi(self._name(p))]
        phi = [p for p in params if self.is_phi(self._name(p))]
        if theta:
            self._step_theta(theta)
        for p in phi:
            if p.grad is not None:
                self.step_phi(self._name(p), p)

    def _step_theta(self, theta: list[torch.Tensor]) -> None:
        if self.theta_optim is None:
            saved = self._state_waiting_to_be_consumed.pop("theta", None)
            if saved is not None and "groups" in saved:
                # resume: rebuild the saved param groups, in order, before loading their state
                by_name = {self._name(p): p for p in theta}
                missing = [n for g in saved["groups"] for n in g if n not in by_name]
                if missing:
                    raise ValueError(
                        f"saved optimizer state is for parameters {missing[:3]} that this "
                        "model does not have; was it saved from another configuration?"
                    )
                groups = [
                    {"params": [by_name[n] for n in g], **self._args_for(g[0])}
                    for g in saved["groups"]
                ]
                self.theta_optim = self.pt_optim_constructor(groups)
                self._load_theta(saved)
                self.set_lr_factor(self.lr_factor)  # this step's factor, not the saved one
                seen = {n for g in saved["groups"] for n in g}
                theta_new = [p for p in theta if self._name(p) not in seen]
                for group in self._groups(theta_new) if theta_new else []:
                    group["initial_lr"] = group.get("lr", self.theta_optim.defaults["lr"])
                    self.theta_optim.add_param_group(group)
            else:
                self.theta_optim = self.pt_optim_constructor(self._groups(theta))
                self.set_lr_factor(self.lr_factor)
                if saved is not None:
                    self._load_theta(saved)
        else:
            seen = {id(p) for g in self.theta_optim.param_groups for p in g["params"]}
            new = [p for p in theta if id(p) not in seen]
            for group in self._groups(new) if new else []:
                group["initial_lr"] = group.get("lr", self.theta_optim.defaults["lr"])
                group["lr"] = group["initial_lr"] * self.lr_factor
                self.theta_optim.add_param_group(group)
        if self.pt_clip_args:
            for p in theta:
                self._clip_grad(p, **self.pt_clip_args)
        self.theta_optim.step()

    @torch.no_grad()
    def step_phi(self, name: str, p: torch.Tensor) -> None:
        """Gradient step on one ``Phi`` tensor, then the exact group soft-threshold."""
        grad = p.grad
        if self.phi_optim == "sgd":
            p.add_(grad, alpha=-self.phi_lr)
            threshold: float | torch.Tensor = self.phi_lr * self.lam
        else:
            st = self.phi_state.get(name)
            if st is None:
                st = self.phi_state[name] = {
                    "step": 0,
                    "exp_avg": torch.zeros_like(p),
                    "exp_avg_sq": torch.zeros_like(p[..., :1, :]),
                }
            b1, b2 = self.betas
            st["step"] += 1
            st["exp_avg"].lerp_(grad, 1 - b1)
            st["exp_avg_sq"].lerp_(grad.square().mean(-2, keepdim=True), 1 - b2)
            m_hat = st["exp_avg"] / (1 - b1 ** st["step"])
            v_hat = st["exp_avg_sq"] / (1 - b2 ** st["step"])
            step = self.phi_lr / (v_hat.sqrt() + self.eps)  # eta_j, one per column
            p.sub_(step * m_hat)
            threshold = step * self.lam
        if self.lam > 0:
            p.copy_(prox_group_lasso(p, threshold))

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """State of both parts, keyed by parameter name (for checkpoints)."""
        out: dict[str, Any] = {"phi": {k: dict(v) for k, v in self.phi_state.items()}}
        if self.theta_optim is not None:
            groups = [[self._name(p) for p in g["params"]] for g in self.theta_optim.param_groups]
            out["theta"] = {
                "names": [n for g in groups for n in g],
                "groups": groups,
                "state": self.theta_optim.state_dict(),
            }
        return out

    def set_state(self, state_dict: dict) -> None:
        """Restore :meth:`get_state` output (theta part applied when its optimizer exists)."""
        self.phi_state = {k: dict(v) for k, v in state_dict.get("phi", {}).items()}
        if "theta" in state_dict:
            if self.theta_optim is None:
                self._state_waiting_to_be_consumed["theta"] = state_dict["theta"]
            else:
                self._load_theta(state_dict["theta"])

    def _load_theta(self, saved: dict) -> None:
        names = [self._name(p) for g in self.theta_optim.param_groups for p in g["params"]]
        if names != saved["names"]:
            raise ValueError(
                "saved optimizer state is for other parameters; was it saved from a model "
                "of another configuration?"
            )
        self.theta_optim.load_state_dict(saved["state"])
