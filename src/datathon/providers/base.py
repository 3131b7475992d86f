"""The provider interface: the only place that knows where things run (this machine, AWS, ...).

A provider hands out each part's backend and the parts of the event built on them, in the order they are made;
commands and the engine never ask which provider or which kind of backend they have."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from datathon.core.context import Context
from datathon.core.part import Part

if TYPE_CHECKING:
    from datathon.database.server import DatabaseServer


class Provider(ABC):
    name: ClassVar[str]

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    def database_server(self) -> DatabaseServer | None:
        """The PostgreSQL server of this event (None: the provider runs no database)."""

    def object_store(self):
        """Where imaging datasets live (None: no `storage:` section)."""
        return None

    def workspaces(self):
        """Where teams work (None: no `workspaces:` section)."""
        return None

    def check_credentials(self) -> tuple[bool, str]:
        """Whether this provider can act now, and if not, how to fix it."""
        return True, ""

    @abstractmethod
    def parts(self, *, drop_team_data: bool = False, delete_images: bool = False,
              final_snapshot: bool = True) -> list[Part]:
        """The parts of this event, each on its backend, in the order they are made. `drop_team_data`: the
        organizer said that a team's schema may be dropped with the team; `delete_images`: `down` also removes
        the machine images the event made (providers without images ignore it); `final_snapshot`: `down` keeps a
        final snapshot of a database server that has them (RDS; `down --no-final-snapshot` says no)."""

    def machines(self):
        """The team machines, for `datathon stop/start` (None: this provider runs no machine per team)."""
        return None

    def golden_image(self, profile: str | None = None):
        """What `datathon image build` needs (None: this provider makes no machine images)."""
        return None

    def recover(self) -> list[tuple[str, str]]:
        """Rebuild the local state from what the provider finds (by tags): (what, found) rows."""
        from datathon.errors import ProvisionError

        raise ProvisionError(f"provider {self.name} keeps nothing outside this machine to recover the state from",
                             hint="`datathon up` rebuilds the local state of a local event")
