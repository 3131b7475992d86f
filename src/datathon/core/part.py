"""The contract every part of the event implements (database server, tenancy and data, storage, workspaces;
next: machines, network, IAM), so that the engine runs them all the same way:

    observe() -> facts          read-only: never creates, starts or writes anything
    plan(facts) -> [Change]     pure: facts in, changes out; every `keep` says why
    status(facts) -> PartStatus computed from what was observed, never from the event file alone
    teardown(facts) -> [Change] what `down` runs for this part
    leftovers() -> [str]        what of this part is still there after `down` (empty: proven gone)

A part names the parts it comes `after`: the engine applies those first and, when they changed something, plans
this one again from fresh facts before applying it (a server started in this run is observable only now).
A team's work is archived, verified and restored per part too (`archive`, `verify_archive`, `restore`,
`work_since`): the database part keeps its schemas, the workspaces part its home and environment. `audit`
gives the part's record of who came in and when.

A part that `settles` is planned once more right after its own changes ran (a load makes tables that need the
teams' grants) and what is left runs at once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from datathon.core.plan import Change
from datathon.core.status import ComponentStatus

if TYPE_CHECKING:
    from datetime import datetime
    from pathlib import Path

    from datathon.core.activity import Activity, WatchReport
    from datathon.core.audit import AuditEvent
    from datathon.core.handout import Section
    from datathon.core.roster import Member


Purpose = Literal["plan", "status", "teardown"]


@dataclass
class PartStatus:
    components: list[ComponentStatus] = field(default_factory=list)
    # detail tables of this part, e.g. {"logins": [...]} or {"workspaces": [...]}; rows have as_dict()
    tables: dict[str, list[Any]] = field(default_factory=dict)


class Part(ABC):
    name: ClassVar[str]  # e.g. "database server", "data", "storage", "workspaces"
    after: ClassVar[tuple[str, ...]] = ()
    settles: ClassVar[bool] = False
    # A blocked change stops `up` before anything changes (True), or is reported while the rest goes ahead
    # (False: e.g. a team that left the file but whose schema holds data is kept, the other changes run).
    blocking: ClassVar[bool] = True

    @abstractmethod
    def observe(self, purpose: Purpose = "plan") -> Any:
        """What is there now. Read-only. `purpose`: what the facts are for; a part may observe less for `status`
        and `teardown` (e.g. not hash a dataset folder of hundreds of GB to delete its copy)."""

    @abstractmethod
    def plan(self, facts: Any) -> list[Change]:
        """The changes that make it as the event file says. Pure: no I/O, no secret made."""

    @abstractmethod
    def status(self, facts: Any) -> PartStatus: ...

    @abstractmethod
    def teardown(self, facts: Any) -> list[Change]: ...

    @abstractmethod
    def leftovers(self) -> list[str]: ...

    def preflight(self) -> list[str]:
        """What on this machine would stop this part before it starts (a port another program holds), each in
        words with how to fix it; read-only, checked by `validate`, `plan` and `up` before anything changes."""
        return []

    def notes(self, facts: Any) -> list[str]:
        """Lines for the plan: what could not be planned yet, and when it will be."""
        return []

    def sql(self) -> Any | None:
        """Where the SQL statements of this part's changes run (a DatabaseServer); None: every change has `run`."""
        return None

    def handout(self, member: Member, secret: Callable[[str], str]) -> list[Section]:
        """This part's sections on a team's or mentor's handout (none by default)."""
        return []

    def roster(self, member: Member, secret: Callable[[str], str]) -> dict[str, str]:
        """This part's columns in the organizers' roster for one team or mentor."""
        return {}

    def files(self, member: Member) -> dict[str, str]:
        """Extra files beside a member's handout (name suffix -> text), e.g. pgAdmin's servers.json."""
        return {}

    def shared_files(self) -> dict[str, bytes]:
        """Files for the handouts folder that every member shares (name -> bytes), e.g. the server's certificate."""
        return {}

    def gone(self) -> list[tuple[str, str]]:
        """After `down`: (what, how it was proven gone) lines for the report."""
        return []

    # -- password rotation (commands/rotate.py runs these in order; each must be safe to run again) ----------
    def running_for(self, member: Member) -> bool:
        """Whether this part runs something for the member that a rotation restarts (a team's server)."""
        return False

    def set_password(self, member: Member, login: str, password: str, *, locked: bool) -> None:
        """Make `password` the login's password here, and end what logged in with the old one. `locked`: the
        member is locked out and stays so."""

    def refresh(self, member: Member, *, restart: bool, locked: bool = False) -> None:
        """After the new passwords are committed: rewrite what carries them (files in the member's home), end
        sessions that outlive a password (a hub cookie), and start again what ran (`restart`; never for a
        `locked` member)."""

    # -- a team's work: archive, verify, restore ----------------------------------------------------------------
    def archive(self, member: Member, dest: Path) -> dict | None:
        """Write this part's copy of a team's work into `dest` (an empty folder of its own) and return what the
        manifest keeps of it (JSON-able: tables with rows and checksums, the files of a home). None: this part
        holds no work of teams. Must not run the team's code with more rights than the team has."""
        return None

    def verify_archive(self, member: Member, src: Path, record: dict) -> list[str]:
        """Problems found restoring/reading this part's copy in `src` against `record` (empty: verified)."""
        return []

    def restore(self, member: Member, src: Path, record: dict) -> None:
        """Put the archived work back into this event (the member must be in it)."""

    def work_since(self, member: Member, record: dict, since: float) -> list[str]:
        """What of the member's work changed after the archive recorded by `record` was taken at `since`
        (epoch seconds); empty: nothing. Cheap, and wrong only on the safe side (a change that was none)."""
        return []

    def audit(self, since: datetime | None) -> list[AuditEvent]:
        """This part's record of logins, connections and servers started and stopped, oldest first."""
        return []

    def logs(self) -> list[Path]:
        """This part's own log files on this machine (copied into the archive before `down` removes them)."""
        return []

    # -- event day: what members run now, and the organizer's hand on it (dashboard, `datathon watch`) ---------
    def activity(self) -> list[Activity]:
        """What members run in this part now (a database session's statement, a team's server). Read-only."""
        return []

    def cancel(self, member: Member, ident: str, *, terminate: bool = False) -> str:
        """Cancel one of `member`'s activities (`terminate`: end its session too); refuses an ident that is not
        the member's (a team must never reach another's). Returns what was done, in words."""
        raise NotImplementedError(f"the {self.name} part has nothing to cancel")

    def guard(self, now: datetime) -> WatchReport | None:
        """One cycle of the watcher: put back what a member changed that the event forbids (a limit lifted on its
        own role), end what runs past the event's limits, flag what only can be flagged (disk over quota), and
        give the figures the dashboard plots. Runs every few seconds: cheap, and never run a team's code."""
        return None
