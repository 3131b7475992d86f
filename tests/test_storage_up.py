"""`up` pushes the event's datasets (and a second `up` sends nothing); `status` shows them; the handouts say
where they are and how to pull them; `down` removes the store and the group datathon made, and proves it."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest

from datathon.commands.down import run_down
from datathon.commands.status import run_status
from datathon.core import unix

pytestmark = [pytest.mark.cluster,
              pytest.mark.skipif(os.geteuid() != 0, reason="the local store belongs to root")]


def digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_up_pushes_datasets_and_down_removes_the_store_and_its_group(make_event, event_dir):
    data = event_dir / "cxr"
    for i in range(40):
        f = data / "files" / f"p1{i % 4}" / f"s{i}.jpg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(os.urandom(500 + i))
    event = f"st{uuid.uuid4().hex[:6]}"
    group = f"{event}_teams"
    ev = make_event(event=event, teams=[{"name": "alpha"}, {"name": "beta"}],
                    storage={"datasets": [{"name": "cxr", "path": "cxr"}]})
    root = ev.ctx.config.storage.local_root(event)
    try:
        result = ev.up()
        pushed = [c for c in result.plan.changes if c.component == "dataset"]
        assert [(c.target, c.action) for c in pushed] == [("cxr", "load")] and "push 40 of 40" in pushed[0].reason
        assert digest(root / "cxr") == digest(data)
        assert root.stat().st_gid == unix.group_gid(group) and root.stat().st_mode & 0o777 == 0o750

        st = run_status(ev.ctx)
        rows = {(c.component, c.name): c for c in st.components}
        assert rows[("storage", str(root))].healthy
        assert rows[("dataset", "cxr")].state == "complete" and "40/40" in rows[("dataset", "cxr")].detail
        sheet = (ev.ctx.state.handouts_dir / "team-alpha.md").read_text()
        assert f"datathon data pull cxr --from {root} --to ~/data/cxr" in sheet and "Imaging data" in sheet

        again = ev.up()
        assert again.applied == 0
        assert [c.action for c in again.plan.changes if c.component in ("storage", "dataset")] == ["keep", "keep"]

        down = run_down(ev.ctx, yes=True, no_archive=True)
        assert not root.exists() and not unix.group_exists(group)
        assert any("imaging store" in what and res == "verified gone" for what, res in down.checked)
    finally:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        unix.remove_group(group)
