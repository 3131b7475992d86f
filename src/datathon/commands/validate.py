"""`datathon validate`: the event file, every problem at once (raised by load_config), and what it describes."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from datathon.commands.plan import check_preflight
from datathon.config import load_config
from datathon.core.context import Context
from datathon.core.state import StateStore
from datathon.providers import get_provider


def validate_event(path: Path, console: Console | None = None) -> dict:
    """The file (every problem at once), then this machine (ports the event would bind)."""
    loaded = load_config(path)
    cfg = loaded.config
    ctx = Context(loaded=loaded, state=StateStore(loaded.base_dir, cfg.event), console=console or Console())
    check_preflight(get_provider(ctx).parts())
    return {
        "event": cfg.event, "provider": cfg.provider, "teams": len(cfg.team_list), "mentors": len(cfg.mentors),
        "database_server": cfg.database.server, "databases": [d.name for d in cfg.databases],
        "shared_schemas": sorted({s for d in cfg.databases for s in d.readable_schemas}),
    }
