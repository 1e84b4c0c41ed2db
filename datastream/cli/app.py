"""The root command group and the translation of errors into one line and an exit code."""

from __future__ import annotations

import importlib
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


# Each command's module, imported when that command runs (or when help lists them all): the
# import and export machinery, rich's progress bars and the HTTP service cost ~0.3 s to load,
# which `datastream streams` would otherwise pay on every call.
COMMAND_MODULES = {
    "demo": "tool_commands",
    "warmup": "tool_commands",
    "import": "import_command",
    "export": "export_command",
    "streams": "streams_command",
    "info": "streams_command",
    "downsample": "maintenance_command",
    "backprocess": "maintenance_command",
    "verify": "maintenance_command",
    "retention": "retention_command",
    "reopen": "reopen_command",
    "serve": "serve_command",
}


class DatastreamGroup(click.Group):
    """Loads each command's module on first use (:data:`COMMAND_MODULES`), and turns errors
    of the library and of input files into :class:`CommandError`, so that every way of
    running a command (console script, ``python -m``, click's test runner) prints one line
    instead of a traceback."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            module = importlib.import_module(f".{COMMAND_MODULES[cmd_name]}", __package__)
            for command in module.COMMANDS:
                self.add_command(command)
        return super().get_command(ctx, cmd_name)

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
