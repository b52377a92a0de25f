"""The collapsed objective of Algorithm 1: the explicit prior sites taken out of the loss.

Collapsed SVI (sec. 2.1) maximises ``L~(theta, Phi)``, the ELBO *without* the group-lasso term,
by stochastic gradients, and applies that term through its proximal operator
(:class:`~pyro_factvae.infer.optim.ProximalOptim`). :func:`collapse` makes a model or guide
compute exactly ``-L~``:

* ``gamma_sq_<g>`` is integrated out ("collapsed variational inference over the scale
  parameters", sec. 2.1): the site is hidden from every outer handler (no trace, ELBO or replay
  sees it, as with ``poutine.block``), and its placeholder value is the prior mean;
* ``Phi_<g>`` stays in the trace, so its value still flows from the guide to the model, but its
  distribution is fully masked (``poutine.mask`` semantics: zero log-density in any ELBO). Its
  marginal log-density, ``-lam sum_j ||Phi_.j||`` (eq 9), is what the prox step applies.

Without :func:`collapse` the same model and guide have all their sites, for prior predictive
draws and the full log joint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyro.poutine.messenger import Messenger

from .. import sites

__all__ = ["collapse"]


class _CollapseMessenger(Messenger):
    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            return
        kind = sites.role(msg)  # tagged by the library, whatever the site's name
        if kind == "gamma_sq":
            # integrated out (sec. 2.1): hidden from outer handlers; its value, the prior
            # mean, only feeds the masked Phi site below
            msg["value"] = msg["fn"].mean
            msg["stop"] = True
        elif kind == "Phi":
            # a fully masked distribution: zero log-density without evaluating it
            msg["fn"] = msg["fn"].mask(False)


def collapse(fn: Callable) -> Callable:
    """Wrap a model or guide for Algorithm 1: ``gamma_sq_<g>`` hidden, ``Phi_<g>`` masked."""

    def collapsed(*args: Any, **kwargs: Any) -> Any:
        with _CollapseMessenger():
            return fn(*args, **kwargs)

    collapsed.__wrapped__ = fn  # type: ignore[attr-defined]
    return collapsed
