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

    def check_credentials(self) -> tuple[bool, str]:
        """What this machine must let datathon do before any part is planned."""
        import os

        if self.ctx.config.workspaces is not None and os.geteuid() != 0:
            return False, "workspaces make Unix users and run the hub as root: run datathon as root (sudo)"
        storage = self.ctx.config.storage
        if storage is not None and storage.backend == "s3" and not storage.endpoint_url:
            import boto3

            if boto3.session.Session().get_credentials() is None:
                return False, ("storage is on S3 and no AWS credentials were found: set AWS_PROFILE or "
                               "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a machine with an instance role")
        return True, ""

    def parts(self, *, drop_team_data: bool = False, delete_images: bool = False,
              final_snapshot: bool = True) -> list[Part]:
        from datathon.dashboard.part import DashboardPart
        from datathon.storage.part import StoragePart
        from datathon.workspaces.part import WorkspacesPart

        server = self.database_server()
        # Storage and workspaces plan and tear down what an earlier file made even without their section.
        return [ServerPart(server), DataPart(self.ctx, server, drop_team_data=drop_team_data),
                StoragePart(self.ctx, self.object_store()),
                WorkspacesPart(self.ctx, server.endpoint, drop_team_data=drop_team_data), DashboardPart(self.ctx)]
