"""The ``factvae`` command's subcommands: each takes the parsed arguments, does its work
through the library's API, prints its result (:func:`~pyro_factvae.cli_io.emit`) and returns
it as a dict. :mod:`pyro_factvae.cli` parses the command line and calls them."""

from __future__ import annotations

import argparse
import os
import shlex
import warnings
from collections.abc import Sequence
from typing import Any

from .cli_csv import blank_headers, read_text
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

__all__ = [
    "DEFAULT_MODEL",
    "cmd_evaluate",
    "cmd_fit",
    "cmd_impute",
    "cmd_lambda_path",
    "cmd_sparsity",
]

#: where ``factvae fit`` writes its model when ``-o`` is not given
DEFAULT_MODEL = "model.factvae"


def _resume_command(args: argparse.Namespace, checkpoint: str) -> str:
    """The command line that resumes this fit from ``checkpoint``, quoted for a shell: as it
    was launched (torchrun's processes too), the data and output, and the options the
    checkpoint does not keep (how the data are read, where logs go, the device)."""
    processes = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(processes)))
    launch = "factvae"
    if processes > local:  # several nodes: their rendezvous is the user's to repeat
        launch = (
            f"torchrun --nnodes {processes // local} --nproc_per_node {local} (and the run's "
            "rendezvous options) -m pyro_factvae.cli"
        )
    elif processes > 1:
        launch = f"torchrun --standalone --nproc_per_node {processes} -m pyro_factvae.cli"
    words = ["fit", args.data, "--resume", checkpoint, "-o", args.out]
    if args.drop_empty_rows:
        words.append("--drop-empty-rows")
    if args.log_dir:
        words += ["--log-dir", args.log_dir]
    if args.device != "cpu":
        words += ["--device", args.device]
    return f"{launch} {shlex.join(words)}"


def cmd_fit(args: argparse.Namespace) -> dict[str, Any] | None:
    """Under ``torchrun`` every process trains its share of each minibatch (data-parallel);
    rank 0 alone writes the checkpoint, the model file and the output (every rank leaves the
    process group once :func:`~pyro_factvae.cli.main` has said how the run ended)."""
    from .estimator import FactVAE
    from .fit_config import FitConfig
    from .infer.distributed import init_from_env, is_writer
    from .infer.state import as_device

    as_device(args.device)  # before torchrun's process group is set up for it
    init_from_env(args.device)
    if args.out is None:  # the default name: an earlier model there is not replaced unasked
        if os.path.exists(DEFAULT_MODEL):
            raise UserError(
                f"{DEFAULT_MODEL} exists: give -o PATH to write the new model elsewhere, "
                f"or -o {DEFAULT_MODEL} to replace it"
            )
        args.out = DEFAULT_MODEL
    groups = parse_groups(args.groups)
    if args.resume:
        if not os.path.isfile(args.resume):
            raise UserError(f"no such checkpoint: {args.resume}")
        if groups is None:  # the CSV spec travels in the checkpoint
            groups = FactVAE.load(args.resume).columns_
    if args.resume and not args.checkpoint:  # the resumed run checkpoints where it was
        try:
            output_path(args.resume, "--resume")
        except UserError as exc:
            raise UserError(f"{exc}; give --checkpoint PATH to checkpoint elsewhere") from None
    read = (args.data, _spec_file(args.groups))  # --checkpoint may go on where --resume was
    output_path(
        args.out, "--out", inputs=(*read, args.resume), outputs={"--checkpoint": args.checkpoint}
    )
    output_path(args.checkpoint, "--checkpoint", inputs=read)
    if args.checkpoint_every is not None and not (args.checkpoint or args.resume):
        raise UserError("--checkpoint-every needs --checkpoint PATH (where to write them)")
    # the options' values are checked before the data are read: a bad option is not found
    # only after the data's problems are fixed
    likelihood = _likelihoods(args.likelihood)
    vae = FactVAE(
        latent_dim=args.latent_dim, lam=args.lam, likelihood=likelihood, device=args.device
    )
    FitConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
    )
    data, _, groups = read_data(args.data, groups, drop_empty_rows=args.drop_empty_rows)
    checkpoint = args.checkpoint or args.resume
    progress = not args.no_progress and is_writer()
    callbacks = loggers(args.log_dir) if args.log_dir and is_writer() else []
    if groups and not args.resume:  # a resumed run takes them from its checkpoint
        vae.set_columns(groups)
    # resumed, the settings given here must agree with the checkpoint's (the library names
    # any that differ; those left at their defaults take the checkpoint's)
    how = (
        f"resume with: {_resume_command(args, checkpoint)}"
        if checkpoint
        else "nothing was saved; give --checkpoint PATH to be able to resume"
    )
    try:
        with warnings.catch_warnings():  # the API's word that the model keeps a stopped
            # fit's weights: here nothing is kept, and the interruption's own line says so
            warnings.filterwarnings("ignore", message="fit interrupted by .* no checkpoint")
            vae.fit(
                data,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                progress=progress,
                checkpoint=checkpoint,
                checkpoint_every=args.checkpoint_every,
                callbacks=callbacks,
                resume=args.resume,
            )
    except Exception as exc:  # a log that could not be written stops the fit, resumable
        if vae.interrupted_ != "callback":
            raise
        raise UserError(f"writing the logs failed ({exc}); the fit stopped: {how}") from None
    if vae.interrupted_:
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
        "spread": vae.spread_,
    }
    emit(
        args,
        result,
        f"fitted {len(data)} rows, groups {data.names}: final loss {vae.history_[-1]:.4g} "
        f"nats/row (prior terms {vae.prior_history_[-1]:.4g} apart), lam {vae.lam:g}"
        f"{_lam_how(vae.lam_path_)}, "
        f"{links} active links, draws' spread x{vae.spread_:.3g}; wrote {args.out}",
    )
    return result


def _lam_how(path: dict[str, Any] | None) -> str:
    """How ``lam`` came about, for ``factvae fit``'s line: chosen, or ``auto``'s fallback."""
    if not path:
        return ""
    if "chosen_lam" in path:
        return " (chosen on a validation split)"
    return " (lam auto's fallback: no lam could be scored, see the warning)"


def _likelihoods(items: Sequence[str] | None) -> str | dict[str, str]:
    if not items:
        return "normal"
    out = {}
    for item in (part for given in items for part in given.split(";") if part.strip()):
        name, sep, lik = item.partition("=")
        if not sep:
            raise UserError(
                f"--likelihood {item!r}: write group=name, e.g. label=categorical (several: "
                "'a=poisson;b=bernoulli', or the option once per group)"
            )
        if name.strip() in out:
            raise UserError(f"--likelihood names group {name.strip()!r} twice")
        out[name.strip()] = lik.strip()
    return out


def _load(path: str, device: str = "cpu"):
    from .estimator import FactVAE

    if not os.path.isfile(path):
        raise UserError(f"no such model file: {path}")
    return FactVAE.load(path, device=device)


def _spec_file(groups: str | None) -> str | None:
    """The file ``--groups`` names, where it names one (else ``None``: a spec in the text)."""
    return groups if groups is not None and os.path.isfile(groups) else None


def _check_refine_steps(steps: int) -> None:
    if steps < 0:
        raise UserError(f"--refine-steps must be 0 or a positive integer, got {steps}")


def cmd_impute(args: argparse.Namespace) -> dict[str, Any]:
    """``factvae impute``: fill the empty cells (means, draws or intervals) and write them."""
    from .checks import draws_for
    from .queries import INTERVAL_DRAWS

    _check_refine_steps(args.refine_steps)
    if args.draws is not None and args.draws < 1:  # before the data are read
        raise UserError(f"--draws must be a positive integer, got {args.draws}")
    if args.samples < 0 or (args.samples == 0 and (args.draws or args.interval) is not None):
        draws = "" if args.samples < 0 else " with --draws or --interval (their proposals)"
        kind = "0 or a positive integer" if args.samples < 0 else "a positive integer"
        raise UserError(f"--samples must be {kind}{draws}, got {args.samples}")
    interval_draws = INTERVAL_DRAWS
    if args.interval is not None:  # before anything is written
        try:  # as many draws as a level near 1 needs for the draws' range to cover it
            interval_draws = max(INTERVAL_DRAWS, draws_for(args.interval))
        except ValueError as exc:
            raise UserError(f"--interval: {exc}") from None
    inputs = (args.data, args.model, _spec_file(args.groups))
    output_path(args.out, "--out", (".csv", ".npz"), inputs)
    stem, ext = os.path.splitext(args.out)
    bounds = {which: f"{stem}_{which}{ext}" for which in ("lower", "upper")}
    if args.interval is not None:  # the bounds' files too, before any work
        for bound in bounds.values():
            output_path(bound, "--interval's output", inputs=inputs)
    vae = _load(args.model, args.device)
    groups = model_groups(vae, parse_groups(args.groups))
    order = vae.layout_.names
    data, source, groups = read_data(args.data, groups, allow_empty_rows=True, order=order)
    missing = {g: int((~data.observed[:, i]).sum()) for i, g in enumerate(data.names)}
    cells = {g: int((~data.group_cells(i)).sum()) for i, g in enumerate(data.names)}
    # what was read is imputed: observed cells are written back exactly as they were read,
    # each group in its own dtype
    if groups is not None:  # a CSV
        vae.set_columns(groups)

    out = Output(data.names, groups)
    if groups is not None:  # a CSV: what is written back keeps its text
        out = Output(
            data.names, groups, blank_headers(args.data), (read_text(args.data), source.isna())
        )
    written = [args.out]
    query = {"seed": args.seed, "refine_steps": args.refine_steps}
    given, as_read = _queried(source, data, groups)
    # everything computed before anything is written: a failure leaves every file as it was
    if args.draws is None:
        filled = as_read(vae.impute(given, num_samples=args.samples, **query))
    else:  # M completed data sets: stacked with a leading `draw` column, or a draw axis
        draws = vae.impute(given, num_samples=args.samples, num_draws=args.draws, **query)
        filled = [as_read(d) for d in draws]
    if args.interval is not None:
        lower, upper = vae.predict_interval(
            given, args.interval, num_draws=interval_draws, num_samples=args.samples, **query
        )
    if args.draws is None:
        out.write(filled, args.out)
    else:
        out.write_draws(filled, args.out)
    if args.interval is not None:
        for bound, which in ((lower, "lower"), (upper, "upper")):
            out.write(as_read(bound), bounds[which])
            written.append(bounds[which])
    result = {"out": args.out, "written": written, "rows": len(data), "draws": args.draws}
    result.update(filled_groups=missing, filled_cells=cells, interval=args.interval)
    text = (
        f"filled {sum(cells.values())} empty cells {cells} (the groups wholly missing: "
        f"{missing} rows); wrote {', '.join(written)}"
    )
    emit(args, result, text)
    return result


def _queried(source: Any, data: Any, groups: dict[str, list[str]] | None):
    """What the queries of ``factvae impute`` read, and how their results are given back:
    a CSV's DataFrame as read (its filled copy keeps every column); for an ``.npz``, the data
    already read and checked (building them again costs a second or two per query on a
    60,000-row file), each group given back in the dtype and shape it was read in."""
    from .outputs import returned_as, shaped_like

    if groups is not None:
        return source, lambda result: result
    forms = dict(zip(data.names, returned_as(source, data)))
    return data, lambda result: {g: shaped_like(v, *forms[g]) for g, v in result.items()}


def cmd_evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """``factvae evaluate``: held-out scores of a saved model on a data file."""
    _check_refine_steps(args.refine_steps)
    from .metrics import evaluate

    vae = _load(args.model, args.device)
    groups = model_groups(vae, parse_groups(args.groups))
    # rows with no observed group are left out of the scores (metrics.evaluate)
    data, _, _ = read_data(args.data, groups, allow_empty_rows=True, order=vae.layout_.names)
    result = evaluate(
        vae,
        data,
        num_samples=args.samples,
        seed=args.seed,
        standardized=not args.raw,
        refine_steps=args.refine_steps,
        by_group=args.by_group,
    )
    text = "  ".join(f"{k} {v:.4g}" for k, v in result.items() if k != "groups")
    for name, scores in result.get("groups", {}).items():
        text += f"\n{name} held out: " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items())
    units = "the data's units" if args.raw else "standardized units (training mean and sd)"
    result["units"] = "raw" if args.raw else "standardized"
    text += f"\n(log-likelihoods in nats per row; rmse, mae and crps in {units})"
    emit(args, result, text)
    return result


def cmd_sparsity(args: argparse.Namespace) -> dict[str, Any]:
    """``factvae sparsity``: the group-by-latent sparsity map of a saved model."""
    from .plotting import plot_sparsity

    output_path(args.plot, "--plot", PLOT_FORMATS, (args.model,))
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
    """``factvae lambda-path``: fit along a grid of lam and report each."""
    from .tools.selection import lambda_path

    try:
        lams = [float(v) for v in args.lams.split(",") if v.strip()]
    except ValueError:
        raise UserError(f"--lams {args.lams!r}: give numbers separated by commas") from None
    read = (args.data, _spec_file(args.groups))
    output_path(args.plot, "--plot", PLOT_FORMATS, read)
    output_path(args.out, "--out", inputs=read, outputs={"--plot": args.plot})
    data, _, groups = read_data(
        args.data, parse_groups(args.groups), drop_empty_rows=args.drop_empty_rows
    )
    path = lambda_path(
        data,
        lams,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.no_progress,
        fit_kwargs={"batch_size": args.batch_size},
        latent_dim=args.latent_dim,
        likelihood=_likelihoods(args.likelihood),
        device=args.device,
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
