# Written by datathon into the hub's folder: the idle culler's rule (jupyterhub-idle-culler's documented
# `cull_arbiter_hook`), loaded with --config. Generated: edits here are overwritten.
#
# A server the organizer started before the doors open (`datathon workspaces start`, `workspaces.prestart_at`)
# has had no activity since it started, so the plain rule would stop it `idle_timeout` after it started, before
# its team arrives. Such a server carries the mark below in its user_options (the hub keeps it only when
# datathon's own service asked for the start: a team cannot mark its own server). Until its team's first visit it
# is left alone; from then on it is culled as any other, counting the visit itself as activity.
#
# A visit is a browser login into the server: the hub's OAuth token of the team's login session (it has a
# session id), made or used after the pre-start. datathon's own probes (`check`) use tokens without a session and
# are no visit. The culler reads token metadata only (read:tokens), never a token's value.
import json
import os
from datetime import UTC, datetime
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

MARK = "datathon_prestart"

c = get_config()  # noqa: F821


def _time(stamp):
    if not stamp:
        return None
    t = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


async def _first_visit(user, since):
    """The latest browser-session activity of `user` at or after `since`, None when the team has not come."""
    url = os.environ["JUPYTERHUB_API_URL"].rstrip("/") + f"/users/{quote(user)}/tokens"
    resp = await AsyncHTTPClient().fetch(HTTPRequest(
        url, headers={"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}, request_timeout=30))
    tokens = json.loads(resp.body.decode("utf-8", "replace")).get("api_tokens", [])
    seen = [t for tok in tokens if tok.get("session_id")
            for t in (_time(tok.get("created")), _time(tok.get("last_activity"))) if t and t >= since]
    return max(seen, default=None)


async def prestart_arbiter(inactive, inactive_limit, server):
    if inactive is None:
        return False
    mark = (server.get("user_options") or {}).get(MARK)
    if mark:
        user = server["full_name"].split("/", 1)[0]
        try:
            visit = await _first_visit(user, _time(mark))
        except Exception as exc:  # noqa: BLE001 - unsure: keep the server, say why, decide next cycle
            print(f"datathon: not culling pre-started server of {user}: its visits could not be read: {exc}",
                  flush=True)
            return False
        if visit is None:
            return False  # pre-started, its team has not come yet
        inactive = min(inactive, datetime.now(UTC) - visit)
    return inactive.total_seconds() >= inactive_limit


c.IdleCuller.cull_arbiter_hook = prestart_arbiter
