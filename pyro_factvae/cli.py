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
import os
import sys
from collections.abc import Sequence
from typing import Any

from .cli_io import (
    PLOT_FORMATS,
    Interrupted,
    Output,
    UserError,
    emit,
    loggers,
    model_groups,
    output_path,
    parse_groups,
    read_data,
)
from .config import ModelConfig
from .fit_config import FitConfig
from .module.refine import REFINE_STEPS

__all__ = ["PLOT_FORMATS", "main", "parse_groups", "run"]


# ---------------------------------------------------------------------- commands
def cmd_fit(args: argparse.Namespace) -> dict[str, Any] | None:
    """Under ``torchrun`` every process trains its share of each minibatch (data-parallel);
    rank 0 alone writes the checkpoint, the model file and the output."""
    from .estimator import FactVAE
    from .infer.distributed import init_from_env, is_writer

    init_from_env(args.device)
    groups = parse_groups(args.groups)
    if args.resume:
        if not os.path.isfile(args.resume):
            raise UserError(f"no such checkpoint: {args.resume}")
        if groups is None:  # the CSV spec travels in the checkpoint
            groups = FactVAE.load(args.resume).columns_
    output_path(args.out, "--out")
    output_path(args.checkpoint, "--checkpoint")
    data, _, groups = read_data(args.data, groups, drop_empty_rows=args.drop_empty_rows)
    checkpoint = args.checkpoint or args.resume
    progress = not args.no_progress and is_writer()
    callbacks = loggers(args.log_dir) if args.log_dir and is_writer() else []
    if args.resume:
        vae = FactVAE(device=args.device)
        vae.fit(
            data, progress=progress, checkpoint=checkpoint, resume=args.resume, callbacks=callbacks
        )
    else:
        likelihood = _likelihoods(args.likelihood)
        vae = FactVAE(
            latent_dim=args.latent_dim, lam=args.lam, likelihood=likelihood, device=args.device
        )
        if groups:
            vae.set_columns(groups)
        vae.fit(
            data,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
            callbacks=callbacks,
        )
    if vae.interrupted_:
        how = (
            f"resume with: factvae fit {args.data} --resume {checkpoint} -o {args.out}"
            if checkpoint
            else "nothing was saved; give --checkpoint PATH to be able to resume"
        )
        raise Interrupted(f"interrupted by {vae.interrupted_}; {how}", vae.interrupted_)
    if not is_writer():
        return None
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
    emit(
        args,
        result,
        f"fitted {len(data)} rows, groups {data.names}: final loss {vae.history_[-1]:.4g} "
        f"nats/row (prior terms {vae.prior_history_[-1]:.4g} apart), lam {vae.lam:g}"
        f"{' (chosen on a validation split)' if vae.lam_path_ else ''}, "
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


def _load(path: str, device: str = "cpu"):
    from .estimator import FactVAE

    if not os.path.isfile(path):
        raise UserError(f"no such model file: {path}")
    return FactVAE.load(path, device=device)


def cmd_impute(args: argparse.Namespace) -> dict[str, Any]:
    output_path(args.out, "--out", (".csv", ".npz"))
    vae = _load(args.model, args.device)
    groups = model_groups(vae, parse_groups(args.groups))
    data, frame, groups = read_data(args.data, groups, allow_empty_rows=True)
    missing = {g: int((~data.observed[:, i]).sum()) for i, g in enumerate(data.names)}
    cells = {g: int((~data.group_cells(i)).sum()) for i, g in enumerate(data.names)}
    source: Any = data
    if frame is not None:  # observed cells are written back exactly as they were read
        vae.set_columns(groups)
        source = frame

    out = Output(data.names, groups if frame is not None else None)
    written = [args.out]
    query = {"seed": args.seed, "refine_steps": args.refine_steps}
    if args.draws is None:
        out.write(vae.impute(source, num_samples=args.samples, **query), args.out)
    else:  # M completed data sets: stacked with a leading `draw` column, or a draw axis
        draws = vae.impute(source, num_samples=args.samples, num_draws=args.draws, **query)
        out.write_draws(draws, args.out)
    if args.interval is not None:
        lower, upper = vae.predict_interval(
            source, args.interval, num_draws=args.draws or 1000, **query
        )
        stem, ext = os.path.splitext(args.out)
        for bound, which in ((lower, "lower"), (upper, "upper")):
            out.write(bound, f"{stem}_{which}{ext}")
            written.append(f"{stem}_{which}{ext}")
    result = {"out": args.out, "written": written, "rows": len(data), "draws": args.draws}
    result.update(filled_groups=missing, filled_cells=cells, interval=args.interval)
    text = (
        f"filled {sum(cells.values())} empty cells {cells} (the groups wholly missing: "
        f"{missing} rows); wrote {', '.join(written)}"
    )
    emit(args, result, text)
    return result


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .metrics import evaluate

    vae = _load(args.model, args.device)
    data, _, _ = read_data(args.data, model_groups(vae, parse_groups(args.groups)))
    result = evaluate(
        vae, data, num_samples=args.samples, seed=args.seed, standardized=not args.raw
    )
    text = "  ".join(f"{k} {v:.4g}" for k, v in result.items())
    units = "the data's units" if args.raw else "standardized units (training mean and sd)"
    result["units"] = "raw" if args.raw else "standardized"
    text += f"\n(log-likelihoods in nats per row; rmse, mae and crps in {units})"
    emit(args, result, text)
    return result


def cmd_sparsity(args: argparse.Namespace) -> dict[str, Any]:
    from .plotting import plot_sparsity

    output_path(args.plot, "--plot", PLOT_FORMATS)
    vae = _load(args.model, args.device)
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
    emit(args, result, norms.round(3).to_string() + (f"\nwrote {args.plot}" if args.plot else ""))
    return result


def cmd_lambda_path(args: argparse.Namespace) -> dict[str, Any]:
    from .tools.selection import lambda_path

    try:
        lams = [float(v) for v in args.lams.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--lams {args.lams!r}: give numbers separated by commas") from None
    output_path(args.plot, "--plot", PLOT_FORMATS)
    output_path(args.out, "--out")
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
    emit(args, result, "\n".join(lines))
    return result


# ---------------------------------------------------------------------- parser
def _or_auto(kind: type, what: str):
    """An argparse type: ``"auto"`` or a value of ``kind``."""

    def parse(text: str):
        if text == "auto":
            return text
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"give {what} or 'auto', not {text!r}") from None

    return parse


_float_or_auto = _or_auto(float, "a number")
_int_or_auto = _or_auto(int, "an integer")


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
        p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")

    def training(p: argparse.ArgumentParser, epochs: int | None) -> None:
        p.add_argument(
            "--latent-dim",
            type=_int_or_auto,
            default="auto",
            help="latents, or 'auto' (from the number of groups; default)",
        )
        p.add_argument(
            "--epochs",
            type=int,
            default=epochs,
            help="epochs (a cap under early stopping); default: about 3000 steps"
            if epochs is None
            else "default: %(default)s",
        )
        p.add_argument("--batch-size", type=int, default=FitConfig().batch_size)
        p.add_argument(
            "--likelihood",
            action="append",
            help="group=name (normal, bernoulli, categorical, poisson, negative_binomial)",
        )
        p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("fit", help="train a model and save it")
    p.add_argument("data", help=".npz (one array per group) or .csv (with --groups)")
    p.add_argument("--out", "-o", default="model.factvae", help="model file to write")
    p.add_argument(
        "--lam",
        type=_float_or_auto,
        default=ModelConfig().lam,
        help="per-variable group-lasso weight, or 'auto' (chosen on a validation split; "
        "default: %(default)s)",
    )
    p.add_argument("--checkpoint", help="write the training state here (atomically)")
    p.add_argument(
        "--log-dir",
        help="log every epoch to LOG_DIR/history.csv (and TensorBoard, when installed)",
    )
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument(
        "--resume",
        help="continue the run saved in this checkpoint (settings and --groups come from it)",
    )
    p.add_argument(
        "--drop-empty-rows", action="store_true", help="drop rows where every group is missing"
    )
    training(p, None)
    common(p)
    p.set_defaults(run=cmd_fit)

    p = sub.add_parser(
        "impute", help="fill missing cells and groups: means, draws, or central intervals"
    )
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--out", "-o", required=True, help="output .csv or .npz")
    p.add_argument("--samples", type=int, default=100, help="Monte Carlo draws of z")
    p.add_argument(
        "--refine-steps",
        type=int,
        default=REFINE_STEPS,
        help="steps of per-row refinement of the encoder's posterior (0: the encoder's)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=None,
        metavar="M",
        help="write M completed data sets drawn from p(missing | observed) instead of the "
        "means: a CSV stacks them with a leading 'draw' column (1..M), an .npz gives each "
        "group a leading draw axis",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="LEVEL",
        help="also write central LEVEL intervals (e.g. 0.9) as OUT_lower and OUT_upper, "
        "shaped like OUT (observed cells as read)",
    )
    common(p)
    p.set_defaults(run=cmd_impute)

    p = sub.add_parser(
        "evaluate",
        help="log-likelihoods and held-out imputation error",
        description="Log-likelihoods (nats per row) and each group held out in turn: RMSE, "
        "MAE, interval coverage and CRPS, in standardized units (each feature's error over "
        "its training standard deviation) unless --raw.",
    )
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--samples", type=int, default=200, help="importance samples")
    p.add_argument(
        "--raw", action="store_true", help="rmse, mae and crps in the data's units, pooled"
    )
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
