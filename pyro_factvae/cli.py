"""The ``factvae`` command: fit, impute, evaluate, sparsity and lambda-path from the shell.

Data come as ``.npz`` (one array per group, the key is the group name) or ``.csv`` plus a
group spec (``--groups 'a=x1,x2;b=x3'`` or a JSON file ``{"a": ["x1", "x2"], ...}``). A row
whose columns of a group are all empty (NaN) has that group missing. ``fit`` stores the spec
in the model file, so later commands on CSV files need no ``--groups``.

Every user error (missing file, unknown group or column, malformed spec, bad values) ends
with exit status 1 and one line on stderr, ``factvae: error: ...``; never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["main", "run"]

#: figure formats matplotlib writes without extra packages
PLOT_FORMATS = (".png", ".pdf", ".svg")


class UserError(Exception):
    """An error in the user's input: reported as one line, exit status 1."""


class Interrupted(Exception):
    """Training stopped by a signal: one line, exit status 128 + the signal number."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


# ---------------------------------------------------------------------- data in and out
def parse_groups(spec: str | None) -> dict[str, list[str]] | None:
    """``'a=x1,x2;b=x3'`` or a JSON file path -> ``{"a": ["x1", "x2"], "b": ["x3"]}``."""
    if spec is None:
        return None
    if os.path.isfile(spec):
        try:
            with open(spec) as f:
                groups = json.load(f)
        except json.JSONDecodeError as exc:
            raise UserError(f"group spec {spec!r} is not valid JSON: {exc}") from None
        if not isinstance(groups, dict) or not all(
            isinstance(v, list) and v and all(isinstance(c, str) for c in v)
            for v in groups.values()
        ):
            raise UserError(
                f"group spec {spec!r} must be a JSON object of non-empty lists of column names"
            )
        return {str(k): list(v) for k, v in groups.items()}
    groups: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, cols = part.partition("=")
        columns = [c.strip() for c in cols.split(",") if c.strip()]
        if not sep or not name.strip() or not columns:
            raise UserError(
                f"malformed group spec {part!r}: write 'group=col1,col2;other=col3' "
                "or give a JSON file"
            )
        if name.strip() in groups:
            raise UserError(f"group {name.strip()!r} appears twice in the group spec")
        groups[name.strip()] = columns
    if not groups:
        raise UserError("the group spec is empty: write 'group=col1,col2;other=col3'")
    return groups


def read_data(
    path: str,
    groups: dict[str, list[str]] | None,
    drop_empty_rows: bool = False,
    allow_empty_rows: bool = False,
):
    """Read ``.npz`` or ``.csv`` into ``(GroupedData, frame or None, groups or None)``."""
    import pandas as pd

    from .data import GroupedData

    if not os.path.isfile(path):
        raise UserError(f"no such data file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: np.asarray(f[k]) for k in f.files}
        except Exception as exc:
            raise UserError(f"cannot read {path} as .npz: {exc}") from None
        if groups is not None:
            unknown = sorted(set(groups) - set(arrays))
            if unknown:
                raise UserError(f"groups {unknown} are not in {path}; it has {sorted(arrays)}")
            arrays = {g: arrays[g] for g in groups}
        return (
            GroupedData(arrays, drop_empty_rows=drop_empty_rows, allow_empty_rows=allow_empty_rows),
            None,
            None,
        )
    if ext != ".csv":
        raise UserError(f"{path}: unknown data format {ext!r}; use .npz or .csv")
    try:
        frame = pd.read_csv(path)
    except Exception as exc:
        raise UserError(f"cannot read {path} as CSV: {exc}") from None
    if groups is None:
        raise UserError(f"{path} is a CSV: give --groups 'group=col1,col2;other=col3'")
    data = GroupedData.from_dataframe(
        frame, groups, drop_empty_rows=drop_empty_rows, allow_empty_rows=allow_empty_rows
    )
    return data, frame, groups


def _model_groups(vae, given: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    """The CSV spec for data to feed a fitted model: ``--groups`` or the one saved by fit."""
    if given is not None and list(given) != list(vae.layout_.names):
        raise UserError(
            f"--groups names {list(given)}, but the model was fitted on groups "
            f"{list(vae.layout_.names)} (in that order)"
        )
    return given if given is not None else vae.columns_


def _output(path: str | None, option: str, extensions: tuple[str, ...] = ()) -> str | None:
    """Check an output path before any work: a known extension (when ``extensions`` are
    given), a writable folder (created)."""
    from .io import check_writable

    if path is None:
        return None
    ext = os.path.splitext(path)[1].lower()
    if extensions and ext not in extensions:
        raise UserError(
            f"{option} {path}: unknown format {ext or '(none)'!r}; use {' or '.join(extensions)}"
        )
    try:
        return check_writable(path, option)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become ``None`` (``null``), recursively."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _restrict(data, names: Sequence[str] | None, option: str) -> list[str] | None:
    if not names:
        return None
    unknown = [n for n in names if n not in data.names]
    if unknown:
        raise UserError(f"{option}: unknown groups {unknown}; the groups are {data.names}")
    return list(names)


def _emit(args: argparse.Namespace, result: dict[str, Any], text: str) -> None:
    print(json.dumps(_finite(result), indent=1, allow_nan=False) if args.json else text)


# ---------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> dict[str, Any]:
    from .estimator import FactVAE

    groups = parse_groups(args.groups)
    if args.resume:
        if not os.path.isfile(args.resume):
            raise UserError(f"no such checkpoint: {args.resume}")
        if groups is None:  # the CSV spec travels in the checkpoint
            groups = FactVAE.load(args.resume).columns_
    _output(args.out, "--out")
    _output(args.checkpoint, "--checkpoint")
    data, _, groups = read_data(args.data, groups, drop_empty_rows=args.drop_empty_rows)
    checkpoint = args.checkpoint or args.resume
    if args.resume:
        vae = FactVAE()
        vae.fit(data, progress=not args.no_progress, checkpoint=checkpoint, resume=args.resume)
    else:
        likelihood = _likelihoods(args.likelihood)
        vae = FactVAE(latent_dim=args.latent_dim, lam=args.lam, likelihood=likelihood)
        if groups:
            vae.set_columns(groups)
        vae.fit(
            data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=not args.no_progress,
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
        )
    if vae.interrupted_:
        how = (
            f"resume with: factvae fit {args.data} --resume {checkpoint} -o {args.out}"
            if checkpoint
            else "nothing was saved; give --checkpoint PATH to be able to resume"
        )
        raise Interrupted(f"interrupted by {vae.interrupted_}; {how}", vae.interrupted_)
    vae.save(args.out)
    links = int((vae.sparsity().values > 0).sum())
    result = {
        "model": args.out,
        "rows": len(data),
        "groups": data.names,
        "final_loss": vae.history_[-1],
        "final_prior_loss": vae.prior_history_[-1],
        "lam": vae.lam,
        "active_links": links,
    }
    _emit(
        args,
        result,
        f"fitted {len(data)} rows, groups {data.names}: final loss {vae.history_[-1]:.4g} "
        f"nats/row (prior terms {vae.prior_history_[-1]:.4g} apart), lam {vae.lam:g}, "
        f"{links} active links; wrote {args.out}",
    )
    return result


def _likelihoods(items: Sequence[str] | None) -> str | dict[str, str]:
    if not items:
        return "normal"
    out = {}
    for item in items:
        name, sep, lik = item.partition("=")
        if not sep:
            raise UserError(f"--likelihood {item!r}: write group=name, e.g. label=categorical")
        out[name.strip()] = lik.strip()
    return out


def _load(path: str):
    from .estimator import FactVAE

    if not os.path.isfile(path):
        raise UserError(f"no such model file: {path}")
    return FactVAE.load(path)


def cmd_impute(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    _output(args.out, "--out", (".csv", ".npz"))
    vae = _load(args.model)
    groups = _model_groups(vae, parse_groups(args.groups))
    data, frame, groups = read_data(args.data, groups, allow_empty_rows=True)
    missing = {g: int((~data.observed[:, i]).sum()) for i, g in enumerate(data.names)}
    if frame is not None:  # observed cells are written back exactly as they were read
        vae.set_columns(groups)
        filled_frame = vae.impute(frame, num_samples=args.samples, seed=args.seed)
        if args.out.lower().endswith(".npz"):
            np.savez(args.out, **{g: filled_frame[c].to_numpy() for g, c in groups.items()})
        else:
            filled_frame.to_csv(args.out, index=False)
    else:
        filled = vae.impute(data, num_samples=args.samples, seed=args.seed)
        if args.out.lower().endswith(".csv"):
            cols = {
                f"{g}_{j}": filled[g][:, j] for g in data.names for j in range(filled[g].shape[1])
            }
            pd.DataFrame(cols).to_csv(args.out, index=False)
        else:
            np.savez(args.out, **filled)
    result = {"out": args.out, "rows": len(data), "filled_groups": missing}
    _emit(
        args, result, f"filled {sum(missing.values())} missing groups {missing}; wrote {args.out}"
    )
    return result


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .metrics import evaluate

    vae = _load(args.model)
    data, _, _ = read_data(args.data, _model_groups(vae, parse_groups(args.groups)))
    result = evaluate(vae, data, num_samples=args.samples, seed=args.seed)
    text = "  ".join(f"{k} {v:.4g}" for k, v in result.items())
    _emit(args, result, text)
    return result


def cmd_sparsity(args: argparse.Namespace) -> dict[str, Any]:
    from .plotting import plot_sparsity

    _output(args.plot, "--plot", PLOT_FORMATS)
    vae = _load(args.model)
    norms = vae.sparsity()
    if args.plot:
        plot_sparsity(norms, title=os.path.basename(args.model), path=args.plot)
    result = {
        "groups": list(norms.index),
        "latents": list(norms.columns),
        "column_norms": norms.values.tolist(),
        "active_links": int((norms.values > 0).sum()),
        "plot": args.plot,
    }
    _emit(args, result, norms.round(3).to_string() + (f"\nwrote {args.plot}" if args.plot else ""))
    return result


def cmd_lambda_path(args: argparse.Namespace) -> dict[str, Any]:
    from .tools.selection import lambda_path

    try:
        lams = [float(v) for v in args.lams.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--lams {args.lams!r}: give numbers separated by commas") from None
    _output(args.plot, "--plot", PLOT_FORMATS)
    _output(args.out, "--out")
    data, _, groups = read_data(args.data, parse_groups(args.groups))
    path = lambda_path(
        data,
        lams,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.no_progress,
        fit_kwargs={"batch_size": args.batch_size},
        latent_dim=args.latent_dim,
        likelihood=_likelihoods(args.likelihood),
    )
    if args.plot:
        path.plot(args.plot)
    if args.out:
        if groups:
            path.model.set_columns(groups)
        path.model.save(args.out)
    result = {**path.to_dict(), "plot": args.plot, "model": args.out}
    lines = ["      lam  held-out LL  active links"]
    for lam, ll, links in zip(path.lams, path.held_out_ll, path.active_links):
        mark = "  <- chosen" if lam == path.best_lam else ""
        lines.append(f"{lam:>9.4g}  {ll:>11.4f}  {links:>12}{mark}")
    _emit(args, result, "\n".join(lines))
    return result


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog="factvae", description="factVAE on grouped data with missing groups."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, data: bool = True) -> None:
        if data:
            p.add_argument("--groups", help="CSV group spec: 'a=x1,x2;b=x3' or a JSON file")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--seed", type=int, default=0)

    def training(p: argparse.ArgumentParser, epochs: int) -> None:
        p.add_argument("--latent-dim", type=int, default=8)
        p.add_argument("--epochs", type=int, default=epochs)
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument(
            "--likelihood", action="append", help="group=name (normal, bernoulli, categorical)"
        )
        p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("fit", help="train a model and save it")
    p.add_argument("data", help=".npz (one array per group) or .csv (with --groups)")
    p.add_argument("--out", "-o", default="model.factvae", help="model file to write")
    p.add_argument("--lam", type=float, default=1.0)
    p.add_argument("--checkpoint", help="write the training state here (atomically)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument(
        "--resume",
        help="continue the run saved in this checkpoint (settings and --groups come from it)",
    )
    p.add_argument(
        "--drop-empty-rows", action="store_true", help="drop rows where every group is missing"
    )
    training(p, 100)
    common(p)
    p.set_defaults(run=cmd_fit)

    p = sub.add_parser("impute", help="fill missing groups with posterior-predictive means")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--out", "-o", required=True, help="output .csv or .npz")
    p.add_argument("--samples", type=int, default=100)
    common(p)
    p.set_defaults(run=cmd_impute)

    p = sub.add_parser("evaluate", help="log-likelihoods and held-out imputation error")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--samples", type=int, default=200, help="importance samples")
    common(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("sparsity", help="the group x latent map of column norms")
    p.add_argument("model")
    p.add_argument("--plot", help="write the heatmap to this PNG")
    common(p, data=False)
    p.set_defaults(run=cmd_sparsity)

    p = sub.add_parser("lambda-path", help="fit over a lambda grid and choose lambda")
    p.add_argument("data")
    p.add_argument("--lams", default="0,0.1,0.3,1,3", help="comma-separated grid")
    p.add_argument("--plot", help="write the path plot to this PNG")
    p.add_argument("--out", "-o", help="save the model at the chosen lambda")
    training(p, 20)
    common(p)
    p.set_defaults(run=cmd_lambda_path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; return the exit status (0 ok, 1 user error, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    try:
        args.run(args)
    except Interrupted as exc:
        print(f"factvae: {exc}", file=sys.stderr)
        import signal

        return 128 + int(getattr(signal, exc.signal_name))
    except (
        UserError,
        ValueError,
        FloatingPointError,
        OSError,
    ) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"factvae: error: {message}", file=sys.stderr)
        return 1
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
