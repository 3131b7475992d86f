"""Everything a command needs, built once by the CLI and passed down (no globals)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from datathon.config import LoadedConfig
from datathon.core.state import StateStore


@dataclass
class Context:
    """Everything a command needs; built once by the CLI and passed down (no globals)."""

    loaded: LoadedConfig
    state: StateStore
    console: Console

    @property
    def config(self):
        return self.loaded.config
