"""Algorithm 1's split update as a ``pyro.optim`` optimizer, and the collapsed objective.

Collapsed SVI (sec. 2.1) maximises ``L~(theta, Phi)``, the ELBO *without* the group-lasso term,
by stochastic gradients, and applies that term through its proximal operator:

1. ``theta`` (encoders, decoders, everything but ``Phi``): a step of any torch optimizer;
2. ``Phi``: a gradient step ``Phi <- Phi - eta grad`` and then, for every group ``g`` and
   latent ``j``, the group soft-threshold
   ``Phi_.j <- Phi_.j / ||Phi_.j|| * (||Phi_.j|| - eta lam)_+``.

:func:`collapse` removes the explicit prior sites (``Phi_<g>``, ``gamma_sq_<g>``) from the loss
by masking them (``poutine.mask`` semantics: their log-density counts zero in any ELBO), so the
loss is exactly ``-L~``. The sites stay in the trace, so ``Phi`` still flows from guide to
model; only their log-density, the term the prox handles, is left out.

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

__all__ = ["ProximalOptim", "collapse", "default_is_phi", "PRIOR_SITE_PREFIXES"]

#: sample sites whose log-density the prox takes over
PRIOR_SITE_PREFIXES = ("Phi_", "gamma_sq_")


class _CollapseMessenger(Messenger):
    def _process_message(self, msg: dict) -> None:
        if msg["type"] == "sample" and str(msg["name"]).startswith(PRIOR_SITE_PREFIXES):
            # a fully masked distribution: zero log-density without evaluating it
            msg["fn"] = msg["fn"].mask(False)


def collapse(fn: Callable) -> Callable:
    """Wrap a model or guide so its ``Phi_<g>``/``gamma_sq_<g>`` sites leave the loss."""

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
        Step size ``eta`` of the ``Phi`` update; the prox threshold is ``eta * lam``.
    phi_optim : {"sgd", "adam"}
        ``"sgd"`` (default) is the true proximal-gradient step of Algorithm 1. ``"adam"``
        takes an Adam step of size ``phi_lr`` before the same prox: not a proximal-gradient
        method in the strict sense, but often faster; use it knowingly.
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
        phi_optim: str = "sgd",
        is_phi: Callable[[str], bool] = default_is_phi,
        clip_args: dict | None = None,
    ) -> None:
        if lam < 0 or lam != lam:
            raise ValueError(f"lam must be >= 0, got {lam}")
        if not phi_lr > 0:
            raise ValueError(f"phi_lr must be > 0, got {phi_lr}")
        if phi_optim not in ("sgd", "adam"):
            raise ValueError(f"phi_optim must be 'sgd' or 'adam', got {phi_optim!r}")
        super().__init__(optim_constructor, optim_args or {"lr": 1e-3}, clip_args)
        self.lam, self.phi_lr, self.phi_optim, self.is_phi = lam, phi_lr, phi_optim, is_phi
        self.theta_optim: torch.optim.Optimizer | None = None
        self.phi_adam: torch.optim.Optimizer | None = None
        self._names: dict[torch.Tensor, str] = {}

    def _name(self, p: torch.Tensor) -> str:
        name = self._names.get(p)
        if name is None:
            name = self._names[p] = pyro.get_param_store().param_name(p)
        return name

    def _groups(self, params: list[torch.Tensor]) -> list[dict]:
        if callable(self.pt_optim_args):
            return [{"params": [p], **self.pt_optim_args(self._name(p))} for p in params]
        return [{"params": params, **self.pt_optim_args}]

    def _add(self, key, optim, constructor, params, groups_fn):
        seen = {id(p) for g in (optim.param_groups if optim else []) for p in g["params"]}
        new = [p for p in params if id(p) not in seen]
        if optim is None:
            optim = constructor(groups_fn(new))
            self._restore(optim, key)
        elif new:
            for group in groups_fn(new):
                optim.add_param_group(group)
        return optim

    def __call__(self, params: Iterable[torch.Tensor], *args: Any, **kwargs: Any) -> None:
        """One step of Algorithm 1 on the parameters that took part in the loss."""
        params = sorted(params, key=self._name)  # deterministic order
        theta = [p for p in params if not self.is_phi(self._name(p))]
        phi = [p for p in params if self.is_phi(self._name(p))]
        if theta:
            self.theta_optim = self._add(
                "theta",
                self.theta_optim, self.pt_optim_constructor, theta, self._groups
            )
            if self.pt_clip_args:
                for p in theta:
                    self._clip_grad(p, **self.pt_clip_args)
            self.theta_optim.step()
        if phi:
            self.step_phi(phi)

    @torch.no_grad()
    def step_phi(self, phi: list[torch.Tensor]) -> None:
        """Gradient (or Adam) step on each ``Phi`` tensor, then the group soft-threshold."""
        if self.phi_optim == "adam":
            self.phi_adam = self._add(
                "phi",
                self.phi_adam,
                torch.optim.Adam,
                phi,
                lambda ps: [{"params": ps, "lr": self.phi_lr}],
            )
            self.phi_adam.step()
        else:
            for p in phi:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.phi_lr)
        threshold = self.phi_lr * self.lam
        if threshold > 0:
            for p in phi:
                p.copy_(prox_group_lasso(p, threshold))

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict:
        """Optimizer state of both parts, keyed by parameter name (for checkpoints)."""
        out = {}
        for key, optim in (("theta", self.theta_optim), ("phi", self.phi_adam)):
            if optim is not None:
                names = [self._name(p) for g in optim.param_groups for p in g["params"]]
                out[key] = {"names": names, "state": optim.state_dict()}
        return out

    def set_state(self, state_dict: dict) -> None:
        """Restore :meth:`get_state` output; applied when the optimizers are (re)built."""
        self._state_waiting_to_be_consumed = dict(state_dict)
        for key, optim in (("theta", self.theta_optim), ("phi", self.phi_adam)):
            if optim is not None:
                self._restore(optim, key)

    def _restore(self, optim: torch.optim.Optimizer, key: str) -> None:
        saved = self._state_waiting_to_be_consumed.pop(key, None)
        if saved is None:
            return
        names = [self._name(p) for g in optim.param_groups for p in g["params"]]
        if names != saved["names"]:
            raise ValueError(
                f"saved {key} optimizer state is for parameters {saved['names'][:3]}..., "
                f"not {names[:3]}...; was it saved from a model of another configuration?"
            )
        optim.load_state_dict(saved["state"])
