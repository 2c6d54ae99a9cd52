"""``postroom serve``: run the listeners (and the queue runner) in the foreground."""

from __future__ import annotations

import click

from postroom.cli.options import reports_errors, site_option


@click.command()
@site_option
@click.option("--workers", type=int, default=None,
              help="Intake processes (default: smtp.workers in the profile, else one per core).")
@reports_errors
def serve(site_dir: str | None, workers: int | None) -> None:
    """Serve mail: every listener in the profile, until SIGTERM (which drains first)."""
    from postroom import serve as serve_mod

    serve_mod.run(site_dir, workers)
