"""The `local` provider: everything on this one server (a managed cluster, or a server that exists already;
a local folder or an S3 bucket for the imaging data; JupyterHub with a Unix user per team)."""

from __future__ import annotations

from functools import cached_property

from datathon.core.part import Part
from datathon.database.parts import DataPart, ServerPart
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

    def object_store(self):
        if self.ctx.config.storage is None:
            return None
        from datathon.storage import get_store

        return get_store(self.ctx)

    def workspaces(self):
        if self.ctx.config.workspaces is None:
            return None
        from datathon.workspaces.hub import hub_for

        return hub_for(self.ctx)

    def parts(self, *, drop_team_data: bool = False) -> list[Part]:
        from datathon.storage.part import StoragePart
        from datathon.workspaces.part import WorkspacesPart

        server = self.database_server()
        # Storage and workspaces plan and tear down what an earlier file made even without their section.
        return [ServerPart(server), DataPart(self.ctx, server, drop_team_data=drop_team_data),
                StoragePart(self.ctx), WorkspacesPart(self.ctx, server.endpoint)]
