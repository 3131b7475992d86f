"""The `local` provider: everything on this one server."""

from __future__ import annotations

from functools import cached_property

from datathon.database.server import DatabaseServer
from datathon.providers.base import Provider


class LocalProvider(Provider):
    name = "local"

    @cached_property
    def _database_server(self) -> DatabaseServer:
        if self.ctx.config.database.server == "managed":
            from datathon.database.cluster import ManagedCluster

            return ManagedCluster(self.ctx)
        from datathon.database.external import ExternalServer

        return ExternalServer(self.ctx)

    def database_server(self) -> DatabaseServer:
        return self._database_server
