"""Who is looking: the organizer (a token kept 0600 in the state folder) or a team (its own password, the state
secret of its login, so a rotation ends its portal sessions too). Failed logins are slowed down per name."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

from datathon.core.roster import login_role
from datathon.core.state import StateStore
from datathon.dashboard.process import ORGANIZER_SECRET

COOKIE_SECRET = "dashboard-cookie"
MAX_FAILURES = 5  # per name within WINDOW seconds; then refused for WINDOW seconds
WINDOW = 60.0


@dataclass(frozen=True)
class Viewer:
    kind: str  # "organizer" or "team"
    team: str = ""

    @property
    def who(self) -> str:
        """How the journal names this viewer."""
        return "organizer" if self.kind == "organizer" else f"team {self.team}"

    def may_see(self, team: str) -> bool:
        return self.kind == "organizer" or self.team == team


def mark(secret: str) -> str:
    """What a session keeps of the password it logged in with: when the secret changes, the session ends."""
    return hashlib.sha256(b"datathon-dashboard\0" + secret.encode()).hexdigest()[:32]


class Gate:
    def __init__(self, state: StateStore, event: str, teams: list[str]) -> None:
        self.state, self.event, self.teams = state, event, set(teams)
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _secret(self, kind: str, team: str = "") -> str | None:
        if kind == "organizer":
            return self.state.secret(ORGANIZER_SECRET)
        if team not in self.teams:
            return None
        return self.state.secret(login_role(self.event, team), create=False)

    def throttled(self, name: str) -> bool:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < WINDOW]
            self._failures[name] = recent
            return len(recent) >= MAX_FAILURES

    def login(self, kind: str, team: str, password: str) -> tuple[Viewer, str] | None:
        """The viewer and its session mark when the password is right; None otherwise (and counted)."""
        name = "organizer" if kind == "organizer" else team
        secret = self._secret(kind, team)
        # compare in constant time, also for an unknown team (against a random value)
        ok = hmac.compare_digest(password.encode(), (secret or secrets.token_hex(16)).encode()) and secret
        if not ok:
            with self._lock:
                self._failures.setdefault(name, []).append(time.monotonic())
            return None
        return Viewer(kind, "" if kind == "organizer" else team), mark(secret)

    def still_valid(self, viewer: Viewer, session_mark: str) -> bool:
        secret = self._secret(viewer.kind, viewer.team)
        return bool(secret) and hmac.compare_digest(mark(secret), session_mark)
