"""The ``factvae`` command: fit, impute, evaluate, sparsity and lambda-path from the shell.

Data come as ``.npz`` (one array per group, the key is the group name) or ``.csv`` plus a
group spec (``--groups 'a=x1,x2;b=x3'`` or a JSON file ``{"a": ["x1", "x2"], ...}``). A row
whose columns of a group are all empty (NaN) has that group missing. ``fit`` stores the spec
in the model file, so later commands on CSV files need no ``--groups``.

Every user error (missing file, unknown group or column, malformed spec, bad values) ends
with exit status 1 and one line on stderr, ``factvae: error: ...``; never a traceback. An
option the parser cannot read (a word for a number, a required option left out) prints the
usage and exits with status 2, as usage errors do.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Sequence

from .cli_commands import (
    DEFAULT_MODEL,
    cmd_evaluate,
    cmd_fit,
    cmd_impute,
    cmd_lambda_path,
    cmd_sparsity,
)
from .cli_io import (
    PLOT_FORMATS,
    Interrupted,
    UserError,
    parse_groups,
)
from .config import ModelConfig
from .fit_config import FitConfig
from .infer.state import OWN_GROUPS
from .module.predict import NUM_SAMPLES
from .module.refine import REFINE_STEPS

__all__ = ["PLOT_FORMATS", "main", "parse_groups", "run"]


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
        prog="factvae",
        description="factVAE on grouped data with missing groups.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, data: bool = True) -> None:
        if data:
            p.add_argument("--groups", help="CSV group spec: 'a=x1,x2;b=x3' or a JSON file")
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.add_argument("--seed", type=int, default=0, help="default: %(default)s")
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
        p.add_argument(
            "--batch-size", type=int, default=FitConfig().batch_size, help="default: %(default)s"
        )
        p.add_argument(
            "--likelihood",
            action="append",
            help="group=name (normal, bernoulli, categorical, poisson, negative_binomial); "
            "several as 'a=poisson;b=bernoulli' or the option once per group",
        )
        p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("fit", help="train a model and save it")
    p.add_argument("data", help=".npz (one array per group) or .csv (with --groups)")
    p.add_argument(
        "--out",
        "-o",
        help=f"model file to write (default: {DEFAULT_MODEL}, which is replaced only when "
        "named here)",
    )
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
    p.add_argument(
        "--samples",
        type=int,
        default=NUM_SAMPLES,
        help="Monte Carlo draws of z behind each mean and the draws' proposals (%(default)s; "
        "0: the means at the posterior mean of z, without --draws or --interval)",
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        default=REFINE_STEPS,
        help="steps of per-row refinement of the encoder's posterior (0: the encoder's; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--draws",
        type=int,
        default=None,
        metavar="M",
        help="write M completed data sets drawn from p(missing | observed) instead of the "
        "means: a CSV stacks them with a leading 'draw' column (1..M; 'draw_' if the data "
        "have a 'draw' column), an .npz gives each "
        "group a leading draw axis",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=None,
        metavar="LEVEL",
        help="also write central LEVEL intervals (e.g. 0.9) as OUT_lower and OUT_upper, "
        "shaped like OUT (observed cells as read), each bound one of 1,000 draws "
        "(of (1 + LEVEL) / (1 - LEVEL) above a level of 0.998)",
    )
    common(p)
    p.set_defaults(run=cmd_impute)

    p = sub.add_parser(
        "evaluate",
        help="log-likelihoods and held-out imputation error",
        description="Log-likelihoods (nats per row) and, with each group held out in turn and "
        "pooled over the groups (each group's with --by-group), RMSE, MAE, interval coverage "
        "and CRPS, in standardized units (each normal feature's error over its training "
        "standard deviation; other families' in their own units) unless --raw.",
    )
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument(
        "--samples",
        type=int,
        default=NUM_SAMPLES,
        help="draws of z behind the log-likelihoods, each imputed mean and the draws' proposals "
        "(%(default)s)",
    )
    p.add_argument("--raw", action="store_true", help="rmse, mae and crps in the data's units")
    p.add_argument(
        "--by-group",
        action="store_true",
        help="also the held-out scores of each group (JSON: under 'groups')",
    )
    p.add_argument(
        "--refine-steps",
        type=int,
        default=REFINE_STEPS,
        help="steps of per-row refinement of the posterior behind the imputations (0: none; "
        "default: %(default)s)",
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
    p.add_argument("--lams", default="0,0.1,0.3,1,3", help="comma-separated grid (%(default)s)")
    p.add_argument("--plot", help="write the path plot to this PNG")
    p.add_argument("--out", "-o", help="save the model at the chosen lambda")
    p.add_argument(
        "--drop-empty-rows", action="store_true", help="drop rows where every group is missing"
    )
    training(p, 20)
    common(p)
    p.set_defaults(run=cmd_lambda_path)
    for command in sub.choices.values():  # --lam is not --lams: no abbreviations
        command.allow_abbrev = False
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv``; return the exit status (0 ok, 1 user error, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return int(exc.code or 0)
    try:
        with warnings.catch_warnings():  # one line each, in the words of the command line
            warnings.showwarning = _show_warning
            args.run(args)
    except KeyboardInterrupt:  # outside training, which takes SIGINT over (reading data...)
        if _writer():
            print("factvae: interrupted", file=sys.stderr)
        return 130
    except Interrupted as exc:  # every rank of a torchrun run stops: rank 0 says so
        if _writer():
            print(f"factvae: {exc}", file=sys.stderr)
        import signal

        number = getattr(signal, exc.signal_name, None)  # else a stop on another rank
        return 128 + int(number) if number is not None else 1
    except (
        UserError,
        ValueError,
        FloatingPointError,
        OSError,
    ) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"factvae: error: {_as_options(message)}", file=sys.stderr)
        return 1
    finally:  # after rank 0 alone has said how the run ended
        from .infer.distributed import leave

        leave()
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, ``factvae: warning: <message>``, on stderr (rank 0 only),
    without the file and line of the code that raised it. (It replaces
    ``warnings.showwarning`` while a command runs: a caller of :func:`main` that records
    warnings sees them printed instead.)"""
    if _writer():
        lines = str(message).strip().splitlines()
        text = lines[0] if lines else category.__name__
        print(f"factvae: warning: {_as_options(text)}", file=file or sys.stderr)


def _writer() -> bool:
    """Whether this process speaks for the run (rank 0 of a torchrun run, or the only one)."""
    from .infer.distributed import is_writer

    return is_writer()


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


#: :data:`~pyro_factvae.infer.state.OWN_GROUPS` in the words of the command line
CLI_OWN_GROUPS = (
    "; a model takes the groups it was fitted on only: for other groups, fit a new model "
    "(factvae fit)"
)

#: the library's argument names that a ``factvae`` option sets, as the option is spelled
OPTIONS = {
    "checkpoint_every": "--checkpoint-every",
    "batch_size": "--batch-size",
    "latent_dim": "--latent-dim",
    "num_samples": "--samples",
    "num_draws": "--draws",
    "epochs": "--epochs",
    "lams": "--lams",
    "lam": "--lam",
    "seed": "--seed",
    "device": "--device",
}


#: a resume's ``name=value (file: saved)``, the settings that differ from a checkpoint's
_DIFFERS = re.compile(r"\b(\w+)=(\S+?) \(file: ")


def _as_options(message: str) -> str:
    """A library message that starts with an argument's name (or advises ``device='cpu'``,
    or names the settings that differ from a checkpoint) in the words of the command line."""
    message = message.replace("device='cpu'", "--device cpu")
    message = message.replace(OWN_GROUPS, CLI_OWN_GROUPS)
    message = message.replace("(in Python, on a new FactVAE(); these differ", "(these differ")
    message = _DIFFERS.sub(
        lambda m: f"{OPTIONS[m[1]]} {m[2]} (file: " if m[1] in OPTIONS else m[0], message
    )
    for name, option in OPTIONS.items():
        if message.startswith((f"{name} ", f"{name}=")):
            return option + message[len(name) :]
    return message


if __name__ == "__main__":  # last: python -m pyro_factvae.cli (torchrun) needs all of the above
    run()
