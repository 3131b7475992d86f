"""`datathon serve`: start the dashboard detached (or say where it runs), `--stop` it. The process itself runs
`datathon serve --foreground` (datathon.web.server)."""

from __future__ import annotations

from dataclasses import dataclass

from datathon.core.context import Context
from datathon.dashboard import process
from datathon.dashboard.process import ORGANIZER_SECRET


@dataclass
class Served:
    url: str
    pid: int | None
    token_file: str
    started: bool  # False: it ran already (or, for --stop, nothing ran)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def run_serve(ctx: Context) -> Served:
    p = process.place(ctx, default=True)
    token = str(ctx.state.secret_path(ORGANIZER_SECRET))
    with ctx.state.lock():
        pid = process.running_pid(p.folder)
        if pid is not None and process.healthy(p):
            return Served(p.url, pid, token, started=False)
        process.stop(p.folder)
        return Served(p.url, process.start(ctx, p), token, started=True)


def run_serve_stop(ctx: Context) -> Served:
    p = process.place(ctx, default=True)
    stopped = process.stop(p.folder)
    return Served(p.url, None, str(ctx.state.secret_path(ORGANIZER_SECRET)), started=stopped)
