"""`datathon validate`: the event file, every problem at once (raised by load_config), and what it describes."""

from __future__ import annotations

from pathlib import Path

from datathon.config import load_config


def validate_event(path: Path) -> dict:
    cfg = load_config(path).config
    return {
        "event": cfg.event, "provider": cfg.provider, "teams": len(cfg.team_list), "mentors": len(cfg.mentors),
        "database_server": cfg.database.server, "databases": [d.name for d in cfg.databases],
        "shared_schemas": sorted({s for d in cfg.databases for s in d.readable_schemas}),
    }
