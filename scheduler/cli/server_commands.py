"""`gpupool serve` and `gpupool up` (filled in by the scheduler work)."""

from __future__ import annotations

import click


def register_server_commands(group: click.Group) -> None:
    """Add the commands that run the scheduler to the CLI group."""
