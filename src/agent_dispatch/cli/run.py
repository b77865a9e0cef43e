"""`serve` and `test`: the commands that run dispatches (filled in by the dispatch engine work)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
