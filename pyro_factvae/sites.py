"""Names of the Pyro sites of factVAE's programs, and their parsing: the one place they live.

========================  ==========================================================
``gamma_sq_<g>``          ``(K,)`` group-lasso scales of group ``g`` (eq 7)
``Phi_<g>``               ``(m, K)`` matrix ``[W_g ; V_g^T]`` of group ``g`` (eq 8)
``theta_prior``           factor: ``N(0, 1)`` prior on the generator networks (sec. 2)
``z``                     ``(K,)`` latent of each row, in plate ``data`` (eq 4)
``x_<g>``                 ``(d_g,)`` observations of group ``g``, masked where missing (eq 5)
========================  ==========================================================

A group name is any non-empty string (``"S1 Trimer"``, ``"IgG.1"``, ``"left arm"``): Pyro site
names are arbitrary strings, and parsing only looks at the prefix. The group-lasso sites also
carry their kind in ``infer`` (:func:`tagged`), which handlers read instead of the name: a
user's own site named ``Phi_...``, or the library's sites renamed by
``pyro.contrib.autoname.scope``, are told apart.
"""

from __future__ import annotations

__all__ = [
    "DATA_PLATE",
    "THETA_PRIOR",
    "Z",
    "gamma_sq",
    "ROLE",
    "parse",
    "phi",
    "role",
    "tagged",
    "term",
    "x",
]

Z = "z"
THETA_PRIOR = "theta_prior"
DATA_PLATE = "data"
#: per-group site kinds, longest prefix first so parsing is unambiguous
_KINDS = ("gamma_sq", "Phi", "x")


#: the ``infer`` key that names a group-lasso site's kind (``"gamma_sq"`` or ``"Phi"``)
ROLE = "factvae_role"


def tagged(kind: str) -> dict[str, str]:
    """The ``infer`` dict of a group-lasso site of ``kind`` (``"gamma_sq"`` or ``"Phi"``)."""
    return {ROLE: kind}


def role(msg: dict) -> str | None:
    """The kind a Pyro message's site was tagged with (:func:`tagged`), else ``None``."""
    return (msg.get("infer") or {}).get(ROLE)


def x(group: str) -> str:
    """Observation site of ``group``."""
    return f"x_{group}"


def phi(group: str) -> str:
    """``Phi`` site of ``group``."""
    return f"Phi_{group}"


def gamma_sq(group: str) -> str:
    """Group-lasso scale site of ``group``."""
    return f"gamma_sq_{group}"


def parse(name: str) -> tuple[str, str | None]:
    """``(kind, group)`` of a site name: kind is ``"x"``, ``"Phi"``, ``"gamma_sq"`` (with the
    group) or the name itself for the global sites ``"z"`` and ``"theta_prior"`` (group
    ``None``)."""
    for kind in _KINDS:
        if name.startswith(kind + "_"):
            return kind, name[len(kind) + 1 :]
    return name, None


def term(name: str) -> str:
    """The model term a site belongs to, in words (for error messages)."""
    kind, group = parse(name)
    if kind == "x":
        return f"likelihood of group {group!r}"
    if kind == Z:
        return "KL of z"
    if kind == THETA_PRIOR:
        return "theta prior"
    return "group-lasso prior"
