"""`database.server: rds`: every setting checked with its line before any AWS call."""

from __future__ import annotations

import re
from datetime import date

import pytest

from datathon.config import load_config
from datathon.errors import ConfigError

HEAD = """\
event: rc
provider: aws
teams: {count: 2}
aws: {region: ap-southeast-1, ssh_from: [203.0.113.0/24]}
databases: [{name: rcdb}]
database:
  server: rds
  ca_file: global-bundle.pem
  tunnel: {ssh: ubuntu@10.0.0.5, identity_file: jump.key}
"""


def load(tmp_path, text: str):
    path = tmp_path / "datathon.yaml"
    path.write_text(text)
    return load_config(path).config


def problems(tmp_path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, text)
    return err.value.problems


def test_defaults_and_the_class_on_a_day(tmp_path):
    cfg = load(tmp_path, HEAD + "  rds:\n    scale: [{at: 2026-12-07, instance_class: db.r6g.2xlarge}]\n")
    rds = cfg.database.rds
    assert rds.instance_class == "db.t4g.medium" and rds.maintenance_window == "sun:20:00-sun:20:30"
    assert rds.deletion_protection and rds.encrypted and rds.family == "postgres16"
    assert rds.class_on(date(2026, 12, 6)) == "db.t4g.medium"
    assert rds.class_on(date(2026, 12, 7)) == "db.r6g.2xlarge"


@pytest.mark.parametrize(("extra", "message"), [
    ("  rds: {instance_class: m5.large}\n", "is not an RDS instance class"),
    ("  rds: {maintenance_window: '04:00-04:30'}\n", "is not a weekly window"),
    ("  rds: {backup_window: 'sun:18:00'}\n", "is not a daily window"),
    ("  rds: {engine_version: '11'}\n", "not a supported PostgreSQL version"),
    ("  rds: {storage_gb: 100, max_storage_gb: 50}\n", "must be more than storage_gb"),
    ("  rds:\n    scale: [{at: 2026-12-09, instance_class: db.r6g.large}, {at: 2026-12-01, instance_class: "
     "db.r6g.xlarge}]\n", "date order"),
])
def test_bad_rds_settings_are_named_at_their_line(tmp_path, extra, message):
    found = problems(tmp_path, HEAD + extra)
    assert any(message in p for p in found), found
    assert all(re.search(r"datathon\.yaml:\d+: ", p) for p in found), found


def test_rds_is_never_public_and_needs_its_ca(tmp_path):
    no_tunnel = HEAD.replace("  tunnel: {ssh: ubuntu@10.0.0.5, identity_file: jump.key}\n", "")
    assert any("never public" in p for p in problems(tmp_path, no_tunnel))
    no_ca = HEAD.replace("  ca_file: global-bundle.pem\n", "")
    assert any("global-bundle.pem" in p for p in problems(tmp_path, no_ca))


def test_rds_needs_provider_aws(tmp_path):
    local = HEAD.replace("provider: aws\n", "").replace("aws: {region: ap-southeast-1, ssh_from: [203.0.113.0/24]}\n", "")
    assert any("needs provider: aws" in p for p in problems(tmp_path, local))
