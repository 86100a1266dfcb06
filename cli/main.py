"""The ``geoidec`` command line: the typer app, assembled from one module per command (thin
calls of the library, heavy imports inside the commands), and its console entry point.

User errors print one line starting with ``error:``: exit status 2 for usage errors (unknown
options, bad values, typos in choices, existing outputs without --overwrite), 1 for data and
runtime errors (unreadable rasters, mismatched grids, full disk); ``--debug`` (or
GEOIDEC_DEBUG=1) shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from geoidec.cli import compare, evaluate, export, info, predict, samples, train
from geoidec.cli.errors import is_click, is_usage_error, user_message
from geoidec.cli.sigterm import exit_if_sigterm_unwound

from geoidec.errors import DATA_EXIT, USAGE_EXIT

app = typer.Typer(
    name="geoidec",
    help="Class-incremental semantic segmentation for remote sensing (IDEC), with GIS outputs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode="markdown",
)
samples_app = typer.Typer(help="Write bundled sample data.", no_args_is_help=True)
app.add_typer(samples_app, name="samples")
app.command()(train.train)
app.command()(evaluate.evaluate)
app.command()(compare.compare)
samples_app.command("isprs")(samples.isprs)
app.command()(predict.predict)
app.command()(info.info)
app.command()(export.export)

_DEBUG = {"on": bool(os.environ.get("GEOIDEC_DEBUG"))}


def _show_version(value: bool) -> None:
    if value:
        from geoidec import __version__

        typer.echo(f"geoidec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option(
        "--version", "-V", is_eager=True, callback=_show_version,
        help="Print geoidec's version and exit.")] = False,
) -> None:
    if debug:
        _DEBUG["on"] = True


def main() -> None:
    """Console entry point: one-line errors, exit status 2 for usage errors (the command
    line or settings), 1 for data and runtime errors (geoidec/errors.py)."""
    try:
        code = app(prog_name="geoidec", standalone_mode=False)
    except (KeyboardInterrupt, typer.Abort):
        exit_if_sigterm_unwound()  # predict unwound on SIGTERM
        typer.echo("geoidec: interrupted", err=True)
        sys.exit(130)
    except SystemExit as exc:
        exit_if_sigterm_unwound()
        if type(exc).__name__ != "SIGTERMException":  # Lightning's, raised between batches
            raise
        typer.echo("geoidec: stopped by SIGTERM at an iteration boundary (saved); continue with "
                   "the same command and --resume RUN", err=True)
        sys.exit(143)
    except Exception as exc:  # noqa: BLE001 - user errors are classified in cli/errors.py
        _exit_on_user_error(exc)
        raise  # a bug (or --debug): its traceback
    if code == 130:  # typer turns Ctrl-C (and predict's SIGTERM) into exit code 130
        exit_if_sigterm_unwound()
        typer.echo("geoidec: interrupted", err=True)
    if isinstance(code, int) and code:
        sys.exit(code)


def _exit_on_user_error(exc: Exception) -> None:
    """Exit with a user error ``exc`` as one line (a bare group: its help); return for a bug,
    or for any error with --debug, which then keeps its traceback."""
    ctx = getattr(exc, "ctx", None)
    if is_click(exc, "NoArgsIsHelpError"):  # `geoidec` or `geoidec samples` alone: the help
        typer.echo(ctx.get_help() if ctx is not None else str(exc))
        sys.exit(USAGE_EXIT)
    if is_click(exc, "UsageError"):  # click's: unknown option, bad choice, missing argument
        where = ctx.command_path if ctx is not None else "geoidec"
        text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {' '.join(text.split())} (see '{where} --help')", err=True)
        sys.exit(USAGE_EXIT)
    message = user_message(exc)
    if _DEBUG["on"] or message is None:
        return
    typer.echo(f"error: {message}", err=True)
    sys.exit(USAGE_EXIT if is_usage_error(exc) else DATA_EXIT)


if __name__ == "__main__":
    main()
