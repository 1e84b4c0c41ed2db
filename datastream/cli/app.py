"""The root command group and the translation of errors into one line and an exit code."""

from __future__ import annotations

import sys

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


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"],
                                          "max_content_width": 100})
def cli() -> None:
    pass


def _register() -> None:
    from . import (
        export_command,
        import_command,
        maintenance_command,
        streams_command,
        tool_commands,
    )

    for module in (tool_commands, import_command, export_command, streams_command,
                   maintenance_command):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _fail(message: str, code: int) -> int:
    click.echo(f"error: {message}", err=True)
    return code


def run(argv: list[str] | None = None) -> int:
    """Run a command; datastream errors become one ``error: ...`` line, never a traceback."""
    prog = "python -m datastream" if sys.argv[0].endswith("__main__.py") else "datastream"
    try:
        result = cli.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.ClickException as error:
        error.show()
        return error.exit_code
    except click.Abort:
        return _fail("aborted", EXIT_ERROR)
    except BadInput as error:
        return _fail(str(error), EXIT_BAD_INPUT)
    except (exceptions.DatastreamException, ValueError, TypeError, OSError) as error:
        return _fail(str(error) or type(error).__name__, EXIT_ERROR)
    return result if isinstance(result, int) else 0
