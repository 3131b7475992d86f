"""The tunnel and CA settings of an external server: refused with their line before anything runs."""

from __future__ import annotations

import re

import pytest

from datathon.config import load_config
from datathon.errors import ConfigError

BASE = """\
event: tc
teams: {count: 2}
databases: [{name: tcdb}]
database:
  server: external
  admin_dsn: "host=db.internal port=5432 user=master dbname=postgres"
"""


def problems(tmp_path, extra: str) -> list[str]:
    path = tmp_path / "datathon.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.problems


def test_a_good_tunnel_is_accepted(tmp_path):
    path = tmp_path / "datathon.yaml"
    path.write_text(BASE + "  sslmode: verify-full\n  ca_file: rds-ca.pem\n"
                    "  tunnel: {ssh: ubuntu@bastion.example.org:2222, identity_file: keys/bastion}\n")
    db = load_config(path).config.database
    assert db.tunnel.ssh == "ubuntu@bastion.example.org:2222" and str(db.ca_file) == "rds-ca.pem"


@pytest.mark.parametrize(("extra", "message"), [
    ("  tunnel: {ssh: bastion.example.org, identity_file: k}\n", "is not user@host or user@host:port"),
    ("  tunnel: {ssh: 'u@h; rm -rf /', identity_file: k}\n", "is not user@host or user@host:port"),
    ("  tunnel: {ssh: u@h}\n", "identity_file"),
    ("  sslmode: verify-full\n", "give ca_file"),
])
def test_bad_tunnel_settings_are_named(tmp_path, extra, message):
    found = problems(tmp_path, extra)
    assert any(message in p for p in found), found
    assert all(re.search(r"datathon\.yaml:\d+: ", p) for p in found), found  # each at its line


def test_tunnel_and_ca_file_belong_to_an_external_server(tmp_path):
    path = tmp_path / "datathon.yaml"
    path.write_text("event: tc\nteams: {count: 2}\ndatabases: [{name: tcdb}]\n"
                    "database:\n  tunnel: {ssh: u@h, identity_file: k}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any("only for server: external" in p for p in err.value.problems)


def test_a_socket_folder_cannot_be_tunnelled_to(tmp_path):
    path = tmp_path / "datathon.yaml"
    path.write_text(BASE.replace("host=db.internal", "host=/var/run/postgresql")
                    + "  tunnel: {ssh: u@h, identity_file: k}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert any("socket folder" in p for p in err.value.problems), err.value.problems
