"""The provider interface: the only place that knows where things run (this machine, AWS, ...)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from rich.console import Console

from datathon.config import LoadedConfig
from datathon.database.server import DatabaseServer
from datathon.state import StateStore


@dataclass
class Context:
    """Everything a command needs; built once by the CLI and passed down (no globals)."""

    loaded: LoadedConfig
    state: StateStore
    console: Console

    @property
    def config(self):
        return self.loaded.config


class Provider(ABC):
    name: str

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    def database_server(self) -> DatabaseServer:
        """The PostgreSQL server of this event."""
