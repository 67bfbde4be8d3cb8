"""How the command line fails: one-line errors with exit code 1 (2 for usage errors, from click)."""

from __future__ import annotations

import sys

import click


class UserError(click.ClickException):
    """A failure the user can fix: printed as one line, exit code 1."""


class OneLineErrorGroup(click.Group):
    """Click group that turns unexpected exceptions into one-line errors unless --debug."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except Exception as exc:  # noqa: BLE001 - the CLI boundary
            if ctx.obj and ctx.obj.get("debug"):
                raise
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"Error: {msg}", err=True)
            sys.exit(1)
