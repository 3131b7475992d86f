"""A provider slots in through the contracts alone: a fake one (tests/fake_provider.py) is driven through the real
`plan`, `up`, `status`, `handouts` and `down` commands, with no change to the commands or the engine. Runs in
seconds: no root, cluster, hub or moto."""

from __future__ import annotations

import csv

import fake_provider
import pytest
import yaml

from conftest import make_context
from datathon.commands.down import run_down
from datathon.commands.plan import plan_event
from datathon.commands.status import run_status
from datathon.commands.up import run_up
from datathon.config import models
from datathon.core.part import Part
from datathon.engine import ordered
from datathon.errors import ProvisionError
from datathon.providers import PROVIDERS


@pytest.fixture
def fake(monkeypatch, tmp_path):
    monkeypatch.setitem(PROVIDERS, "fake", "fake_provider:FakeProvider")
    monkeypatch.setattr(models, "PROVIDER_NAMES", models.PROVIDER_NAMES | {"fake"})
    monkeypatch.setattr(fake_provider, "CLOUD", fake_provider.Cloud())
    text = yaml.safe_dump({"event": "fk", "provider": "fake", "teams": [{"name": "alpha"}, {"name": "beta"}],
                           "mentors": [{"name": "mia"}], "databases": [{"name": "fkdb"}]})
    return make_context(tmp_path, text)


def snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")) if folder.exists() else []


def test_a_provider_slots_in_through_the_contracts(fake, tmp_path):
    cloud = fake_provider.CLOUD
    before = snapshot(fake.state.root)
    plan = plan_event(fake)
    assert [(c.component, c.target, c.action) for c in plan.pending] == [
        ("bucket", "fake-bucket", "create"), ("machine", "fk_alpha", "create"), ("machine", "fk_beta", "create")]
    assert snapshot(fake.state.root) == before == []  # planning wrote nothing
    result = run_up(fake, yes=True)
    assert result.applied == 3 and cloud.machines == {"fk_alpha": "running", "fk_beta": "running"}
    assert run_up(fake, yes=True).applied == 0  # twice changes nothing
    st = run_status(fake)
    assert st.healthy and [r.name for r in st.tables["machines"]] == ["fk_alpha", "fk_beta"]
    # the parts' handout sections and roster columns, with the member's one password
    sheet = (fake.state.handouts_dir / "team-alpha.md").read_text()
    assert "fk_alpha.fake.example" in sheet and fake.state.secret("fk_alpha", create=False) in sheet
    with open(result.roster) as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["kind"], r["name"], r["machine"]) for r in rows] == [
        ("team", "alpha", "fk_alpha.fake.example"), ("team", "beta", "fk_beta.fake.example"), ("mentor", "mia", "")]
    # drift is observed, not assumed: a machine stopped behind datathon's back
    cloud.machines["fk_beta"] = "stopped"
    assert not run_status(fake).healthy
    assert [(c.target, c.action, c.reason) for c in plan_event(fake).pending] == [("fk_beta", "start", "it is stopped")]
    run_up(fake, yes=True)
    down = run_down(fake, yes=True, no_archive=True)
    assert cloud.machines == {} and cloud.buckets == set()
    assert ("team machines", "verified gone") in down.checked
    assert not fake.state.root.exists()


def test_a_part_waiting_for_one_the_provider_lacks_is_a_clear_error():
    class Lonely(Part):
        name = "lonely"
        after = ("nowhere",)

        def observe(self, purpose="plan"): ...
        def plan(self, facts): return []
        def status(self, facts): ...
        def teardown(self, facts): return []
        def leftovers(self): return []

    with pytest.raises(ProvisionError, match="nowhere"):
        ordered([Lonely()])


def test_deletions_the_approved_plan_did_not_show_are_asked_again(fake):
    """A part planned again after the parts it needs changed: a deletion that was not in the approved plan is
    put to the caller, and declining stops before that part changes anything."""
    from datathon.engine import apply_up, plan_up
    from datathon.errors import Aborted
    from datathon.providers import get_provider

    run_up(fake, yes=True)
    fake_provider.CLOUD.buckets.discard("fake-bucket")  # the bucket must be made again: machines are re-planned
    fake_provider.CLOUD.machines["fk_stray"] = "running"  # ... and find a machine the preview did not see
    parts = get_provider(fake).parts()
    plan = plan_up(parts)
    fake_provider.CLOUD.machines["fk_late"] = "running"
    asked = []

    def decline(changes, question):
        asked.append([c.target for c in changes])
        return False

    with pytest.raises(Aborted):
        apply_up(fake, plan, approve=decline)
    assert asked == [["fk_late"]]  # fk_stray was in the approved plan; fk_late is new
    assert "fk_late" in fake_provider.CLOUD.machines and "fk_stray" in fake_provider.CLOUD.machines


def test_a_provider_that_cannot_act_says_how_to_fix_it_before_planning(tmp_path, monkeypatch):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    (tmp_path / "images").mkdir()
    text = yaml.safe_dump({"event": "cred", "teams": {"count": 1}, "databases": [{"name": "creddb"}],
                           "storage": {"backend": "s3", "bucket": "cred-imaging",
                                       "datasets": [{"name": "cxr", "path": str(tmp_path / "images")}]}})
    ctx = make_context(tmp_path, text)
    with pytest.raises(ProvisionError) as err:
        plan_event(ctx)
    assert "cannot act from here" in err.value.message and "AWS_PROFILE" in err.value.hint
    assert not ctx.state.root.exists()
