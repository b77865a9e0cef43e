"""`jobs`, `job`, `cancel`, `gc`: job control from the terminal (filled in by the async jobs work)."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Attach this module's commands to the top-level group."""
