"""The `aws` provider: a machine per team in one AWS region, with its network, key pair and role, found by tags.

The database is an external server for now (`database.server: external`, e.g. an RDS instance you made; RDS made
by datathon comes with issue 15), the imaging store is the storage part on S3, and the team workspaces are the
machines (JupyterLab on each, reached through an SSH or SSM tunnel). This module composes the AWS parts and hands
each what it needs from elsewhere: the bucket's read policy for the machines' role, the user data a machine boots
with (the workspace bootstrap), the database's address for the handouts."""

from __future__ import annotations

from functools import cached_property

from datathon.aws.session import AwsSession
from datathon.core.part import Part
from datathon.database.parts import DataPart, ServerPart
from datathon.database.server import DatabaseServer
from datathon.providers.base import Provider


class AwsProvider(Provider):
    name = "aws"

    @property
    def aws(self):
        return self.ctx.config.aws

    @cached_property
    def session(self) -> AwsSession:
        """One session per command: every part's calls go through it (and are counted)."""
        return AwsSession(region=self.aws.region, profile=self.aws.profile)

    @cached_property
    def _database_server(self) -> DatabaseServer:
        from datathon.database.external import ExternalServer

        return ExternalServer(self.ctx)  # the config allows only `external` under provider aws (until issue 15)

    def database_server(self) -> DatabaseServer:
        return self._database_server

    def object_store(self):
        if self.ctx.config.storage is None:
            return None
        from datathon.storage import get_store

        return get_store(self.ctx)

    def user_data(self, team: str) -> str:
        """What a team's machine runs at first boot: the same workspace bootstrap the local provider uses."""
        from datathon.workspaces.bootstrap import render_user_data

        return render_user_data(self.ctx.config, team)

    def check_credentials(self) -> tuple[bool, str]:
        if not self.session.has_credentials():
            return False, ("no AWS credentials were found: set AWS_PROFILE (or aws.profile in the event file), or "
                           "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run on a machine with an instance role")
        return True, ""

    def parts(self, *, drop_team_data: bool = False) -> list[Part]:
        from datathon.storage.part import StoragePart

        server = self.database_server()
        return [ServerPart(server), DataPart(self.ctx, server, drop_team_data=drop_team_data),
                StoragePart(self.ctx, self.object_store())]
