"""The ``campaigns`` command line (DESIGN.md §4 "CLI": its commands, options, output and exit codes are a contract).

Owns the command table below and exports ``app`` (the Typer application) and ``main`` (the console script
``campaigns = "worker.cli:main"``; ``python -m worker.cli`` runs it too). One module per command group:
``components`` (api, worker, scheduler, beat, simulator, up, demo, migrate), ``campaigns`` (import and its
alias create, status, export, pause, resume, cancel), ``windows``, ``dnc``, ``recurring``; ``common`` holds what
they share. A new command is a function in its group's module, listed here (a new group is a module with its
own ``typer.Typer``, added with ``add_typer``).
"""

from __future__ import annotations

import logging

import typer

from worker.cli import campaigns, components, dnc, recurring, windows

app = typer.Typer(help="Outbound campaign worker for AI voice assistants (Telnyx Scheduled Events compatible).",
                  no_args_is_help=True, add_completion=False)  # fmt: skip

# Registered here, in the order `campaigns --help` lists them.
app.command()(components.migrate)
app.command()(components.api)
app.command()(components.scheduler)
app.command()(components.worker)
app.command()(components.beat)
app.command()(components.simulator)
app.command()(components.up)
app.command("import")(campaigns.import_)
app.command("create", help="The same as import: create a campaign from a CSV call list.")(campaigns.import_)
app.command()(campaigns.status)
app.command()(campaigns.export)
app.command()(campaigns.pause)
app.command()(campaigns.resume)
app.command()(campaigns.cancel)
app.command()(components.demo)
app.add_typer(windows.app, name="windows")
app.add_typer(dnc.app, name="dnc")
app.add_typer(recurring.app, name="recurring")


def main() -> None:
    logging.captureWarnings(True)
    app()


__all__ = ["app", "main"]
