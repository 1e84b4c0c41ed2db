"""The root command group and the translation of errors into one line and an exit code."""

from __future__ import annotations

import sys
from typing import Any

import click

from .. import exceptions
from .bad_input import EXIT_BAD_INPUT, EXIT_ERROR, BadInput

HELP = """Import, export, inspect and maintain datastream stores.

Every command but demo and warmup works on a store named by --db PATH (the embedded DuckDB
file) or --url URL:

\b
  mongodb://[user:pass@]host[:port]/database[?options]
  influxdb://[user:pass@]host[:port]/database?metadata=postgresql://user:pass@host[:port]/dbname
  duckdb:///absolute/path.duckdb

Errors print one line "error: ..." (exit 1); a malformed input file prints
"file:line: column 'name': problem" and nothing is written (exit 2).
"""


class CommandError(click.ClickException):
    """A failure shown as one ``error: ...`` line with its exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True, file=file)


class DatastreamGroup(click.Group):
    """Turns errors of the library and of input files into :class:`CommandError`, so that
    every way of running a command (console script, ``python -m``, click's test runner)
    prints one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BadInput as error:
            raise CommandError(str(error), EXIT_BAD_INPUT) from error
        except (exceptions.DatastreamException, ValueError, TypeError, OSError) as error:
            raise CommandError(str(error) or type(error).__name__, EXIT_ERROR) from error


@click.group(cls=DatastreamGroup, help=HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def cli() -> None:
    pass


def _register() -> None:
    from . import (
        export_command,
        import_command,
        maintenance_command,
        reopen_command,
        retention_command,
        serve_command,
        streams_command,
        tool_commands,
    )

    for module in (tool_commands, import_command, export_command, streams_command,
                   maintenance_command, retention_command, reopen_command, serve_command):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def run(argv: list[str] | None = None) -> int:
    """Run a command and return its exit code."""
    prog = "python -m datastream" if sys.argv[0].endswith("__main__.py") else "datastream"
    try:
        result = cli.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        click.echo("error: aborted", err=True)
        return EXIT_ERROR
    return result if isinstance(result, int) else 0
