"""Fixtures that bring up real managed PostgreSQL clusters (and always tear them down)."""

from __future__ import annotations

import io
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from datathon.commands.down import run_down
from datathon.commands.up import run_up
from datathon.config import load_config
from datathon.core.context import Context
from datathon.core.state import StateStore
from datathon.providers import get_provider

REPO = Path(__file__).resolve().parents[1]
DEMO_SQL = REPO / "examples" / "demo-data.sql"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def event_data(*, event: str, port: int, teams, policy: dict | None = None, **extra) -> dict:
    return {
        "event": event,
        "title": f"Test event {event}",
        "provider": "local",
        "teams": teams,
        "mentors": [{"name": "mentor_ana", "email": "ana@example.org"}],
        "database": {"server": "managed", "port": port},
        "databases": [
            {"name": f"{event}db", "shared_schemas": ["mimiciv_demo"], "sources": [{"sql": "demo-data.sql"}]},
            {"name": f"{event}extra", "shared_schemas": []},
        ],
        "policy": {"connection_limit": 4, "statement_timeout": "5min", "idle_in_transaction_session_timeout": "2min",
                   "temp_file_limit": "1GB", "work_mem": "16MB", **(policy or {})},
        **extra,
    }


def event_yaml(**kw) -> str:
    return yaml.safe_dump(event_data(**kw), sort_keys=False)


def make_context(folder: Path, text: str) -> Context:
    path = folder / "datathon.yaml"
    path.write_text(text)
    loaded = load_config(path)
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                   console=Console(file=io.StringIO(), width=200))


def reload(ctx: Context) -> Context:
    return make_context(ctx.loaded.base_dir, ctx.loaded.path.read_text())


@pytest.fixture
def event_dir(tmp_path: Path) -> Path:
    shutil.copy(DEMO_SQL, tmp_path / "demo-data.sql")
    return tmp_path


class Event:
    """A managed-cluster event for tests; torn down (cluster, state) at the end whatever happened."""

    def __init__(self, folder: Path, text: str) -> None:
        self.folder = folder
        self.ctx = make_context(folder, text)

    def rewrite(self, text: str) -> None:
        self.ctx = make_context(self.folder, text)

    @property
    def server(self):
        return get_provider(self.ctx).database_server()

    def up(self, **kw):
        return run_up(self.ctx, yes=kw.pop("yes", True), **kw)

    def password(self, role: str) -> str:
        return self.ctx.state.secret(role, create=False)

    def close(self) -> None:
        server = self.server
        try:
            run_down(self.ctx, yes=True, no_archive=True)
        finally:
            if server.home.exists():  # down failed: never leave a cluster running behind a test
                server._stop()
                shutil.rmtree(server.home, ignore_errors=True)
            self._close_workspaces()

    def _close_workspaces(self) -> None:
        """After a failed down: no hub, no Unix user of this event may outlive the test."""
        from datathon.core import unix
        from datathon.workspaces import accounts, names
        from datathon.workspaces.hub import hub_for

        if self.ctx.config.workspaces is not None:
            hub_for(self.ctx).stop()
        for entry in accounts.event_users(self.ctx.state):
            accounts.remove_user(entry.pw_name, self.ctx.state)
        for group in (names.teams_group(self.ctx.config.event), names.mentors_group(self.ctx.config.event)):
            unix.remove_group(group)


@pytest.fixture(scope="session")
def three_teams(tmp_path_factory) -> Event:
    """The acceptance event: 3 teams, a mentor, two databases, demo data; brought up once."""
    folder = tmp_path_factory.mktemp("three_teams")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    ev = Event(folder, event_yaml(event="acc", port=free_port(), teams=[
        {"name": "alpha", "members": [{"name": "Ana Lim", "email": "ana@example.org"}]},
        {"name": "beta"},
        {"name": "gamma"},
    ]))
    try:
        ev.up()
        yield ev
    finally:
        ev.close()


@pytest.fixture
def make_event(event_dir):
    made: list[Event] = []

    def factory(**kw) -> Event:
        ev = Event(event_dir, event_yaml(port=free_port(), **kw))
        made.append(ev)
        return ev

    yield factory
    for ev in made:
        ev.close()
