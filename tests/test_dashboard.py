"""The dashboard (`datathon serve`) against a real event, in a real headless Chromium (Debian's, driven by
Playwright): the organizer sees every team and cancels a team's long query; a team sees its handout and its own
query and nothing of another team; the pages are refreshed without a reload. Screenshots go to docs/screenshots/."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from conftest import DEMO_SQL, REPO, Event, event_data, free_port
from datathon.commands.rotate import run_rotate
from datathon.commands.status import run_status
from datathon.core import journal
from datathon.dashboard import process

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = REPO / "docs" / "screenshots"
TEAMS = [{"name": "tiger", "title": "Sepsis & lactate"}, {"name": "walrus"}, {"name": "heron"}]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make setup installs it)")


@pytest.fixture(scope="module")
def ev(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dash")
    shutil.copy(DEMO_SQL, folder / "demo-data.sql")
    port = free_port()
    data = event_data(event="dsh", port=free_port(), teams=TEAMS, timezone="Asia/Singapore",
                      dashboard={"port": port, "watch_every": "2s"})
    event = Event(folder, yaml.safe_dump(data, sort_keys=False))
    event.url = f"http://127.0.0.1:{port}"
    try:
        event.up()  # starts the dashboard too (the file has `dashboard:`)
        yield event
    finally:
        event.close()
    assert process.running_pid(process.folder(event.ctx)) is None, "down must stop the dashboard"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield b
        finally:
            b.close()


def connect(ev: Event, team: str) -> psycopg.Connection:
    role, ep = f"dsh_{team}", ev.server.endpoint()
    return psycopg.connect(host=ep.host, port=ep.port, dbname="dshdb", user=role, password=ev.password(role),
                           sslmode="require", autocommit=True, connect_timeout=5)


class LongQuery:
    """A team's statement that runs until cancelled, in a thread (as the team, with its own password)."""

    def __init__(self, ev: Event, team: str, sql: str = "SELECT pg_sleep(600)") -> None:
        self.error: Exception | None = None
        self.conn = connect(ev, team)
        self.pid = self.conn.info.backend_pid
        self.thread = threading.Thread(target=self._run, args=(sql,), daemon=True)
        self.thread.start()

    def _run(self, sql: str) -> None:
        try:
            self.conn.execute(sql)
        except psycopg.Error as exc:
            self.error = exc

    def close(self) -> None:
        if self.thread.is_alive():
            self.conn.cancel()
        self.thread.join(timeout=10)
        self.conn.close()


def log_in(browser, ev: Event, *, team: str | None = None, password: str | None = None):
    page = browser.new_page(viewport={"width": 1500, "height": 900})
    page.goto(f"{ev.url}/login")
    if team is None:
        page.check("input[value=organizer]")
        page.fill("input[name=password]", password or ev.ctx.state.secret("dashboard-organizer", create=False))
    else:
        page.fill("input[name=team]", team)
        page.fill("input[name=password]", password or ev.password(f"dsh_{team}"))
    page.click("button[type=submit]")
    return page


def test_up_starts_it_and_status_shows_it(ev):
    st = run_status(ev.ctx)
    row = next(c for c in st.components if c.component == "dashboard")
    assert row.state == "running" and ev.url in row.detail
    assert (ev.ctx.state.secret_path("dashboard-organizer").stat().st_mode & 0o777) == 0o600
    assert httpx.get(f"{ev.url}/organizer", follow_redirects=False).status_code == 303  # not logged in


def test_organizer_sees_every_team_and_cancels_a_long_query(ev, browser):
    query = LongQuery(ev, "walrus")
    try:
        page = log_in(browser, ev)
        page.wait_for_selector("#teams-table")
        for t in TEAMS:
            assert page.locator(f"#team-{t['name']}").count() == 1
        assert "Asia/Singapore" in page.inner_text("header")
        # the table refreshes by itself (htmx, no reload) until the query shows
        page.wait_for_selector("#team-walrus .longest code:has-text('pg_sleep')", timeout=20_000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "organizer.png"), full_page=True)
        page.once("dialog", lambda d: d.accept())
        page.click("#team-walrus button.cancel")
        page.wait_for_selector("#flash.ok", timeout=20_000)
        page.wait_for_selector("#team-walrus .longest:has-text('none running')", timeout=20_000)
        page.wait_for_timeout(2500)  # one refresh later the answer is still shown
        assert "cancelled" in page.inner_text("#flash")
        query.thread.join(timeout=10)
        assert isinstance(query.error, psycopg.errors.QueryCanceled)
        entry = journal.read(ev.ctx.state, member="walrus")[-1]
        assert (entry.who, entry.action, entry.ok) == ("organizer", f"cancel {query.pid}", True)
        page.close()
    finally:
        query.close()


def test_team_sees_its_handout_and_its_own_query_and_nothing_else(ev, browser):
    query = LongQuery(ev, "tiger", "SELECT 'tiger-own-query', pg_sleep(600)")
    other = LongQuery(ev, "heron", "SELECT 'heron-secret-query', pg_sleep(600)")
    try:
        page = log_in(browser, ev, team="tiger")
        page.wait_for_url(f"{ev.url}/team/tiger")
        page.wait_for_selector("#queries code:has-text('tiger-own-query')", timeout=20_000)
        handout = page.frame_locator("#handout")
        assert "dsh_tiger" in handout.locator("body").inner_text(timeout=10_000)
        secret = ev.password("dsh_tiger")  # masked: no password in a picture
        page.screenshot(path=str(SHOTS / "team.png"), full_page=True, mask=[handout.get_by_text(secret)])
        # another team's pages and API, and the organizer's, are refused
        for path in ("/team/heron", "/team/heron/live", "/team/heron/handout", "/api/team/heron", "/api/board",
                     "/organizer", "/organizer/teams"):
            r = page.request.get(f"{ev.url}{path}")
            assert r.status == 403, path
            assert "heron-secret" not in r.text()
        r = page.request.post(f"{ev.url}/team/heron/cancel", form={"ident": str(other.pid)},
                              headers={"X-CSRF-Token": "x"})
        assert r.status == 403
        # nothing of another team in anything the team is sent
        for path in ("/team/tiger", "/team/tiger/live", "/api/team/tiger", "/team/tiger/handout"):
            body = page.request.get(f"{ev.url}{path}").text()
            assert "heron" not in body and "walrus" not in body, path
        # it cancels its own query; another team's pid through its own route is refused
        csrf = page.get_attribute("body", "hx-headers").split('"')[3]
        r = page.request.post(f"{ev.url}/team/tiger/cancel", form={"ident": str(other.pid)},
                              headers={"X-CSRF-Token": csrf})
        assert "runs nothing" in r.text() and other.thread.is_alive()
        page.once("dialog", lambda d: d.accept())
        page.click(f"#queries tr[data-ident='{query.pid}'] button")
        page.wait_for_selector("#flash.ok", timeout=20_000)  # outside the refreshed part: a refresh keeps it
        # the statement ended; its session stays open, idle
        page.wait_for_selector(f"#queries tr[data-ident='{query.pid}'] td:nth-child(2):text-is('idle')",
                               timeout=20_000)
        query.thread.join(timeout=10)
        assert isinstance(query.error, psycopg.errors.QueryCanceled)
        page.close()
    finally:
        query.close()
        other.close()


def test_a_query_text_is_shown_not_run(ev, browser):
    """A team's statement is attacker's text: the organizer's page escapes it."""
    query = LongQuery(ev, "heron", "SELECT '<img src=x onerror=\"document.title=1\">', pg_sleep(600)")
    try:
        page = log_in(browser, ev)
        page.wait_for_selector("#team-heron .longest code:has-text('onerror')", timeout=20_000)
        assert page.locator("#teams-table img").count() == 0
        assert page.title() != "1"
        page.close()
    finally:
        query.close()


def test_logins_csrf_and_rotation(ev):
    with httpx.Client(base_url=ev.url) as c:
        for _ in range(5):
            assert c.post("/login", data={"who": "team", "team": "walrus", "password": "nope"}).status_code == 401
        # throttled now, even with the right password
        right = ev.password("dsh_walrus")
        assert c.post("/login", data={"who": "team", "team": "walrus", "password": right}).status_code == 429
    failed = [e for e in journal.read(ev.ctx.state, member="walrus") if e.action == "dashboard login failed"]
    assert len(failed) == 5 and not any(e.ok for e in failed)
    with httpx.Client(base_url=ev.url) as c:  # the handout's user name (dsh_heron) works as the team's name
        assert c.post("/login", data={"who": "team", "team": "dsh_heron", "password": ev.password("dsh_heron")}
                      ).headers["location"] == "/"
        assert c.get("/team/heron").status_code == 200
    with httpx.Client(base_url=ev.url) as c:
        assert c.post("/login", data={"who": "team", "team": "heron", "password": ev.password("dsh_heron")}
                      ).status_code == 303
        assert c.get("/team/heron").status_code == 200
        # a form posted without the page's token (another site's form) is refused
        assert c.post("/team/heron/restart").status_code == 403
        run_rotate(ev.ctx, ["heron"])
        assert c.get("/team/heron", follow_redirects=False).status_code == 303  # the old password's session ended


def test_serve_verb_reports_stops_and_starts_again(ev):
    from datathon.commands.serve import run_serve, run_serve_stop

    again = run_serve(ev.ctx)
    assert not again.started and again.url == ev.url  # it runs already: said, not started twice
    assert run_serve_stop(ev.ctx).started
    assert process.running_pid(process.folder(ev.ctx)) is None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{ev.url}/healthz")
    back = run_serve(ev.ctx)
    assert back.started and httpx.get(f"{ev.url}/healthz").text == "ok"


def test_https_when_a_certificate_is_given(make_event):
    from datathon.database.tls import self_signed_certificate

    port = free_port()
    ev = make_event(event="dtls", teams=[{"name": "alpha"}], dashboard={"port": port})
    cert, key = self_signed_certificate(["127.0.0.1"], common_name="dashboard")
    (ev.folder / "dash.crt").write_bytes(cert)
    (ev.folder / "dash.key").write_bytes(key)
    data = yaml.safe_load(ev.ctx.loaded.path.read_text())
    data["dashboard"] = {"port": port, "certificate": "dash.crt", "key": "dash.key"}
    ev.rewrite(yaml.safe_dump(data))
    try:
        ev.up()
        with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=False) as c:
            assert c.get("/healthz").text == "ok"
            token = ev.ctx.state.secret("dashboard-organizer", create=False)
            r = c.post("/login", data={"who": "organizer", "password": token})
            assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()
            assert c.get("/api/board").json()["teams"][0]["name"] == "alpha"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")  # no plain HTTP beside it
    finally:
        ev.close()


def test_bad_dashboard_settings_are_refused_with_the_line(make_event):
    from datathon.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        make_event(event="dbad", teams=[{"name": "alpha"}], dashboard={"certificate": "x.crt"}, timezone="Mars/Base")
    text = str(err.value)
    assert "certificate" in text and "Mars/Base" in text
