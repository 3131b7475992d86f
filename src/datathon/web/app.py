"""The web app of `datathon serve`: the organizer's dashboard, the team portal and their JSON API.

Every page renders the board the service built (one observer, many viewers); partials are refreshed by htmx
(vendored, served from /static). A team sees only its own row: each route checks the viewer against the team in
the path before anything is read, and the JSON of a team's view is built from its own row alone."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from datathon.web import plots
from datathon.web.auth import COOKIE_SECRET, Gate, Viewer
from datathon.web.service import Service

HERE = Path(__file__).parent
SESSION_HOURS = 12
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; frame-ancestors 'self'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _templates(service: Service) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("datathon.web", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def local(value: str | datetime | None, fmt: str = "%H:%M:%S") -> str:
        """A time in the event's time zone (the file's `timezone`)."""
        if not value:
            return "-"
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(service.ctx.config.zone).strftime(fmt)

    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "-"
        s = int(seconds)
        return f"{s}s" if s < 120 else f"{s // 60}min {s % 60}s" if s < 7200 else f"{s // 3600}h {s % 3600 // 60}min"

    env.filters.update(local=local, duration=duration, size=plots.human_bytes)
    env.globals.update(spark=plots.sparkline, series=plots.series, total=plots.total)
    return env


def create_app(service: Service, *, tls: bool = False) -> Starlette:
    ctx = service.ctx
    gate = Gate(ctx.state, ctx.config.event, [t.name for t in ctx.config.team_list])
    templates = _templates(service)

    def page(name: str, request: Request, status: int = 200, **values) -> HTMLResponse:
        viewer = _viewer(request)
        html = templates.get_template(name).render(
            viewer=viewer, csrf=request.session.get("csrf", ""), zone=service.ctx.config.timezone,
            every=max(2, int(service.every)), **values)
        return HTMLResponse(html, status_code=status)

    def _viewer(request: Request) -> Viewer | None:
        s = request.session
        if "kind" not in s:
            return None
        viewer = Viewer(s["kind"], s.get("team", ""))
        if not gate.still_valid(viewer, s.get("mark", "")):  # a rotated password ends the session
            s.clear()
            return None
        return viewer

    def _csrf_ok(request: Request, form) -> bool:
        sent = request.headers.get("x-csrf-token") or (form.get("csrf") if form is not None else None) or ""
        want = request.session.get("csrf", "")
        return bool(want) and secrets.compare_digest(str(sent), want)

    def _organizer(request: Request) -> Viewer | Response:
        viewer = _viewer(request)
        if viewer is None:
            return _to_login(request)
        if viewer.kind != "organizer":
            return PlainTextResponse("only the organizer may see this page", status_code=403)
        return viewer

    def _team_viewer(request: Request, team: str) -> Viewer | Response:
        viewer = _viewer(request)
        if viewer is None:
            return _to_login(request)
        if not viewer.may_see(team):
            return PlainTextResponse("this is another team's page", status_code=403)
        if service.board().team(team) is None:
            return PlainTextResponse("no such team", status_code=404)
        return viewer

    def _to_login(request: Request) -> Response:
        if request.headers.get("hx-request") or request.url.path.startswith("/api/"):
            return PlainTextResponse("log in first", status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    # -- pages ---------------------------------------------------------------------------------------------------
    async def home(request: Request) -> Response:
        viewer = _viewer(request)
        if viewer is None:
            return RedirectResponse("/login", status_code=303)
        return RedirectResponse("/organizer" if viewer.kind == "organizer" else f"/team/{viewer.team}", 303)

    async def login_page(request: Request) -> Response:
        return page("login.html", request, error="", board=service.board())

    async def login(request: Request) -> Response:
        form = await request.form()
        kind = "organizer" if form.get("who") == "organizer" else "team"
        team = str(form.get("team", "")).strip().lower()
        team = team.removeprefix(f"{service.ctx.config.event}_")  # the handout's user name works too
        password = str(form.get("password", ""))
        name = "organizer" if kind == "organizer" else team
        if gate.throttled(name):
            return page("login.html", request, 429, board=service.board(),
                        error="too many failed logins: wait a minute, then try again")
        got = gate.login(kind, team, password)
        if got is None:
            if kind == "organizer" or team in gate.teams:  # a name of this event: worth the audit trail
                from datathon.core import journal

                journal.record(service.ctx.state, "dashboard", "dashboard login failed",
                               "" if kind == "organizer" else team, "organizer" if kind == "organizer" else "",
                               ok=False)
            return page("login.html", request, 401, board=service.board(),
                        error="wrong team or password (the password is on your handout)")
        viewer, mark = got
        request.session.clear()
        request.session.update(kind=viewer.kind, team=viewer.team, mark=mark, csrf=secrets.token_urlsafe(24))
        from datathon.core import journal

        journal.record(service.ctx.state, viewer.who, "dashboard login", viewer.team)
        return RedirectResponse("/", status_code=303)

    async def logout(request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    async def organizer(request: Request) -> Response:
        viewer = _organizer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return page("organizer.html", request, board=service.board(), flash=None)

    rendered: dict[str, tuple[int, HTMLResponse]] = {}  # part -> (id of the board, its page): same for all

    async def organizer_part(request: Request) -> Response:
        viewer = _organizer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        which = request.path_params["part"]
        if which not in ("teams", "health", "journal", "charts"):
            return PlainTextResponse("no such part", status_code=404)
        board = service.board()
        cached = rendered.get(which)
        if cached is None or cached[0] != id(board):  # every organizer sees the same partial of one board
            cached = rendered[which] = (id(board), page(f"_{which}.html", request, board=board, flash=None))
        return HTMLResponse(cached[1].body, status_code=200)

    async def posted(request: Request, viewer: Viewer | Response):
        """A POST's viewer and form once the viewer may post here and the form carries the page's token; else the
        answer to send instead."""
        if not isinstance(viewer, Viewer):
            return viewer, None
        form = await request.form()
        if not _csrf_ok(request, form):
            return PlainTextResponse("the page is out of date: reload it", status_code=403), None
        return viewer, form

    async def organizer_action(request: Request) -> Response:
        viewer, form = await posted(request, _organizer(request))
        if form is None:
            return viewer
        team, action = request.path_params["team"], request.path_params["action"]
        outcome = await run_in_threadpool(service.act, viewer, action, team, str(form.get("ident", "")))
        return page("_teams.html", request, board=service.board(), flash=outcome)

    async def organizer_all(request: Request) -> Response:
        viewer, form = await posted(request, _organizer(request))
        if form is None:
            return viewer
        outcome = await run_in_threadpool(service.act_all, viewer, request.path_params["action"])
        return page("_teams.html", request, board=service.board(), flash=outcome)

    async def team_page(request: Request) -> Response:
        team = request.path_params["team"]
        viewer = _team_viewer(request, team)
        if not isinstance(viewer, Viewer):
            return viewer
        return page("team.html", request, board=service.board(), row=service.board().team(team), flash=None)

    async def team_live(request: Request) -> Response:
        team = request.path_params["team"]
        viewer = _team_viewer(request, team)
        if not isinstance(viewer, Viewer):
            return viewer
        return page("_team_live.html", request, board=service.board(), row=service.board().team(team), flash=None)

    async def team_action(request: Request) -> Response:
        team = request.path_params["team"]
        viewer, form = await posted(request, _team_viewer(request, team))
        if form is None:
            return viewer
        outcome = await run_in_threadpool(service.act, viewer, request.path_params["action"], team,
                                          str(form.get("ident", "")))
        return page("_team_live.html", request, board=service.board(), row=service.board().team(team),
                    flash=outcome)

    async def handout(request: Request) -> Response:
        team = request.path_params["team"]
        viewer = _team_viewer(request, team)
        if not isinstance(viewer, Viewer):
            return viewer
        path = service.ctx.state.handouts_dir / f"team-{team}.html"
        if not path.is_file():
            return PlainTextResponse("no handout yet: the organizer runs `datathon handouts`", status_code=404)
        download = request.query_params.get("download") == "1"
        return FileResponse(path, media_type="text/html", filename=path.name if download else None,
                            content_disposition_type="attachment" if download else "inline")

    # -- JSON ----------------------------------------------------------------------------------------------------
    async def api_board(request: Request) -> Response:
        viewer = _organizer(request)
        if not isinstance(viewer, Viewer):
            return viewer
        return JSONResponse(service.board().as_dict())

    async def api_team(request: Request) -> Response:
        team = request.path_params["team"]
        viewer = _team_viewer(request, team)
        if not isinstance(viewer, Viewer):
            return viewer
        board = service.board()
        return JSONResponse({"event": board.event, "built": board.built.isoformat(timespec="seconds"),
                             "team": board.team(team).as_dict()})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    routes = [
        Route("/", home), Route("/healthz", healthz),
        Route("/login", login_page, methods=["GET"]), Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/organizer", organizer), Route("/organizer/{part}", organizer_part),
        Route("/organizer/teams/{team}/{action}", organizer_action, methods=["POST"]),
        Route("/organizer/servers/{action}", organizer_all, methods=["POST"]),
        Route("/team/{team}", team_page), Route("/team/{team}/live", team_live),
        Route("/team/{team}/handout", handout), Route("/team/{team}/{action}", team_action, methods=["POST"]),
        Route("/api/board", api_board), Route("/api/team/{team}", api_team),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(SessionMiddleware, secret_key=ctx.state.secret(COOKIE_SECRET),
                             session_cookie="datathon_dashboard", max_age=SESSION_HOURS * 3600, same_site="strict",
                             https_only=tls)]
    return Starlette(routes=routes, middleware=middleware)


class SecurityHeaders:
    """Adds SECURITY_HEADERS to every HTTP response that does not set its own."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()
                    if k.lower().encode() not in have]
            await send(message)

        await self.app(scope, receive, send_with_headers)
