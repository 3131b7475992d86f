"""`datathon serve --foreground`: the web app under uvicorn, with the service's loop (watcher + board) in a thread
of the same process. `datathon serve` (and `up`) start this detached, through datathon.dashboard."""

from __future__ import annotations

import logging
from pathlib import Path

import uvicorn

from datathon.config.dashboard import Dashboard
from datathon.web.app import create_app
from datathon.web.service import Service


def settings(service: Service) -> Dashboard:
    return service.ctx.config.dashboard or Dashboard()


def serve_forever(config_path: Path) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    service = Service(config_path)
    d = settings(service)
    base = service.ctx.loaded.base_dir
    service.refresh(watch=True)
    service.start()
    app = create_app(service, tls=d.tls)
    config = uvicorn.Config(
        app, host=d.listen, port=d.port, access_log=False, log_level="warning", lifespan="off",
        timeout_keep_alive=75,  # longer than any refresh period: an open page keeps its connection
        ssl_certfile=str(base / d.certificate) if d.certificate else None,
        ssl_keyfile=str(base / d.key) if d.key else None,
    )
    try:
        uvicorn.Server(config).run()
    finally:
        service.stop()
