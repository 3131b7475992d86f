"""The event file: every problem reported at once, with file, line and a did-you-mean; nothing changed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from datathon.commands.init import starter_text
from datathon.config import load_config
from datathon.errors import ConfigError

GOOD = """\
event: sg2026
teams:
  count: 3
databases:
  - name: mimic
    shared_schemas: [mimiciv_hosp]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "datathon.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    return err.value.problems


def test_minimal_file_is_valid_and_teams_are_generated(tmp_path):
    cfg = load_config(write(tmp_path, GOOD)).config
    assert [t.name for t in cfg.team_list] == ["team01", "team02", "team03"]
    assert cfg.provider == "local" and cfg.database.server == "managed"
    assert cfg.database.listen_addresses == ["127.0.0.1"] and cfg.database.port == 54320


def test_team_names_are_zero_padded_to_sort_well(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.replace("count: 3", "count: 120\n  prefix: grp"))).config
    names = [t.name for t in cfg.team_list]
    assert names[0] == "grp001" and names[-1] == "grp120" and names == sorted(names)


def test_misspelt_keys_get_line_and_did_you_mean(tmp_path):
    text = GOOD + "polcy:\n  connection_limit: 3\n"
    (msg,) = problems(tmp_path, text)
    assert "datathon.yaml:7" in msg and "'polcy'" in msg and "did you mean 'policy'" in msg


def test_nested_misspelling_is_found_in_the_right_model(tmp_path):
    text = GOOD.replace("  count: 3", "  count: 3\n  prefx: grp") + "policy:\n  statment_timeout: 5min\n"
    found = problems(tmp_path, text)
    assert any(":4:" in p and "did you mean 'prefix'" in p for p in found), found
    assert any(":9:" in p and "did you mean 'statement_timeout'" in p for p in found), found


def test_every_error_is_reported_at_once(tmp_path):
    text = """\
event: Bad-Name
provider: gcp
teams:
  - name: alpha
  - name: Alpha!
  - name: alpha
databases:
  - name: mimic
    shared_schemas: [public]
    sources:
      - sql: missing.sql
policy:
  statement_timeout: soon
  work_mem: lots
  connection_limit: 0
"""
    found = problems(tmp_path, text)
    joined = "\n".join(found)
    assert ":1:" in joined and "event name 'Bad-Name'" in joined
    assert ":2:" in joined and "unknown provider 'gcp'; valid: aws, local" in joined
    assert ":5:" in joined and "team name 'Alpha!'" in joined
    assert ":9:" in joined and "'public' is reserved" in joined
    assert ":11:" in joined and "missing.sql" in joined and "not found" in joined
    assert ":13:" in joined and "'soon' is not a duration" in joined
    assert ":14:" in joined and "'lots' is not a size" in joined
    assert ":15:" in joined and "greater than or equal to 1" in joined
    assert len(found) >= 8


def test_duplicate_team_names_are_refused(tmp_path):
    text = GOOD.replace("  count: 3\n", "  - name: a1\n  - name: a1\n").replace("teams:\n", "teams:\n")
    found = problems(tmp_path, text)
    assert any("'a1' is used twice" in p for p in found), found


def test_duplicate_yaml_keys_are_an_error_not_a_silent_override(tmp_path):
    (msg,) = problems(tmp_path, GOOD + "event: other\n")
    assert "key 'event' appears twice (first on line 1)" in msg and ":7" in msg


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    (msg,) = problems(tmp_path, "event: x\nteams: [\n")
    assert "datathon.yaml:3" in msg


def test_missing_required_keys_are_named(tmp_path):
    found = problems(tmp_path, "event: x\n")
    assert any("teams: required key is missing" in p for p in found)
    assert any("databases: required key is missing" in p for p in found)


def test_external_server_needs_a_dsn_without_a_password(tmp_path):
    text = GOOD + "database:\n  server: external\n  admin_dsn: postgresql://admin:hunter2@db.example.org/postgres\n"
    (msg,) = problems(tmp_path, text)
    assert "holds a password" in msg and "hunter2" not in msg
    (msg,) = problems(tmp_path, GOOD + "database:\n  server: external\n")
    assert "needs admin_dsn" in msg


def test_addresses_and_networks_are_checked(tmp_path):
    text = GOOD + "database:\n  listen_addresses: [0.0.0.0.1]\n  allow_from: [everyone]\n  port: 80\n"
    joined = "\n".join(problems(tmp_path, text))
    assert "'0.0.0.0.1' is not an IP address" in joined
    assert "'everyone' is not a network" in joined
    assert "port" in joined and "1024" in joined


def test_a_team_may_not_be_named_like_the_database_administrator(tmp_path):
    """Its schema would come first on the administrator's search path ("$user"): its functions and operators
    would run with the administrator's rights in every statement datathon runs (found by the watcher's work)."""
    managed = GOOD.replace("  count: 3\n", "  - name: datathon\n  - name: alpha\n")
    assert any("database administrator's" in p for p in problems(tmp_path, managed))
    external = GOOD.replace("  count: 3\n", "  - name: opsadmin\n") + (
        "database:\n  server: external\n  admin_dsn: postgresql://opsadmin@db.example.org/postgres\n")
    assert any("'opsadmin' is the database administrator's" in p for p in problems(tmp_path, external))
    fine = GOOD.replace("  count: 3\n", "  - name: opsadmin\n")  # managed: the administrator is `datathon`
    assert load_config(write(tmp_path, fine)).config.admin_user() == "datathon"


def test_team_names_may_not_clash_with_shared_schemas(tmp_path):
    text = GOOD.replace("  count: 3\n", "  - name: mimiciv_hosp\n")
    assert any("clash with shared schemas" in p for p in problems(tmp_path, text))


def test_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_missing_file_says_how_to_start(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    assert "datathon init" in str(err.value)


def test_starter_file_is_valid(tmp_path):
    cfg = load_config(write(tmp_path, starter_text(event="sghd2026", teams=20))).config
    assert len(cfg.team_list) == 20 and cfg.event == "sghd2026"


def test_cli_validate_exits_nonzero_prints_no_traceback_and_creates_no_state(tmp_path):
    path = write(tmp_path, GOOD + "polcy: {}\n")
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "validate", "-c", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1
    assert "did you mean 'policy'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    # bad input changes nothing: no event state folder (only the log next to the file)
    assert not (tmp_path / ".datathon" / "sg2026").exists()


def test_cli_up_with_bad_file_changes_nothing(tmp_path):
    path = write(tmp_path, GOOD.replace("count: 3", "count: -1"))
    proc = subprocess.run([sys.executable, "-m", "datathon.cli", "up", "--yes", "-c", str(path)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 1 and "teams.count" in proc.stderr and "nothing was changed" in proc.stderr
    assert not (tmp_path / ".datathon" / "sg2026").exists()
    assert not list(Path("/var/lib/datathon").glob("sg2026-*"))


def test_cli_init_writes_a_valid_file_and_refuses_to_overwrite(tmp_path):
    path = tmp_path / "datathon.yaml"
    run = [sys.executable, "-m", "datathon.cli", "init", "-c", str(path), "--event", "ev1", "--teams", "5"]
    assert subprocess.run(run, capture_output=True).returncode == 0
    assert len(load_config(path).config.team_list) == 5
    proc = subprocess.run(run, capture_output=True, text=True)
    assert proc.returncode == 1 and "exists already" in proc.stderr


def test_down_and_status_do_not_need_the_data_folders(tmp_path):
    text = GOOD + "    sources:\n      - {dataset: mimic-iv, path: gone/}\n"
    (msg,) = problems(tmp_path, text)
    assert "dataset folder 'gone' not found" in msg
    cfg = load_config(tmp_path / "datathon.yaml", check_paths=False).config
    assert cfg.databases[0].readable_schemas == ["mimiciv_hosp", "mimiciv_icu"]


def test_mentor_logins_per_team_must_fit_and_be_unique(tmp_path):
    long = GOOD.replace("teams:\n  count: 3", "teams:\n  - {name: " + "t" * 30 + "}\n"
                        "mentors:\n  - {name: " + "m" * 30 + "}")
    [problem] = problems(tmp_path, long)
    assert "63" in problem and "<event>_<mentor>__<team>" in problem
    clash = GOOD.replace("teams:\n  count: 3", "teams:\n  - {name: alpha}\n  - {name: ana__alpha}\n"
                         "mentors:\n  - {name: ana}")
    [problem] = problems(tmp_path, clash)
    assert "sg2026_ana__alpha" in problem and "rename" in problem


def test_disk_quota_is_a_size(tmp_path):
    [problem] = problems(tmp_path, GOOD + "policy:\n  disk_quota: lots\n")
    assert "disk_quota" in problem and "50GB" in problem
    assert load_config(write(tmp_path, GOOD + "policy:\n  disk_quota: 50GB\n")).config.policy.disk_quota == "50GB"


def test_every_provider_the_file_may_name_has_a_class():
    from datathon.config.common import PROVIDER_NAMES
    from datathon.providers import PROVIDERS

    assert set(PROVIDERS) == PROVIDER_NAMES


# -- provider aws -----------------------------------------------------------------------------------------------

AWS_BASE = {"event": "aw_cfg", "provider": "aws", "teams": {"count": 2},
            "database": {"server": "external", "admin_dsn": "postgresql://admin@db.example.org/postgres"},
            "databases": [{"name": "awdb"}]}


def _aws_problems(tmp_path, data: dict) -> str:
    import yaml

    from datathon.config import load_config
    from datathon.errors import ConfigError

    path = tmp_path / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        load_config(path)
    except ConfigError as exc:
        return "\n".join([str(exc), *exc.problems])
    return ""


@pytest.mark.parametrize("aws, database, expect", [
    ({"ssh_from": ["0.0.0.0/0"]}, None, "lets the whole internet try SSH"),  # the whole internet, not asked for
    ({"region": "europe"}, None, "is not an AWS region name"),
    ({"profiles": {"cpu": {"instance_type": "big"}}}, None, "is not an EC2 instance type"),
    ({"profiles": {"cpu": {"instance_type": "m5.large", "image": "ami-12"}}}, None, "is not an AMI id"),
    ({"gpu_profile": "cpu"}, None, "is not a GPU profile"),
    ({"team_profiles": {"team01": "huge"}}, None, "is not one of the profiles"),
    ({"team_profiles": {"nobody": "cpu"}}, None, "names teams that are not in teams: nobody"),
    ({"vpc": "mine"}, None, "aws.vpc"),
    ({"boot_timeout": "5s"}, None, "at least a minute"),
    ({}, {"server": "managed"}, "use database.server: rds"),
    (None, None, "provider aws needs an aws: section"),
])
def test_aws_section_is_checked_before_any_call_with_file_and_line(tmp_path, aws, database, expect):
    data = {**AWS_BASE, **({"aws": aws} if aws is not None else {})}
    if database is not None:
        data["database"] = database
    out = _aws_problems(tmp_path, data)
    assert expect in out, out
    assert "datathon.yaml:" in out  # file:line


def test_aws_section_valid_and_defaults(tmp_path):
    from datathon.config import load_config

    data = {**AWS_BASE, "teams": [{"name": "alpha", "gpus": 1}, {"name": "beta"}, {"name": "gamma"}],
            "aws": {"ssh_from": ["203.0.113.7/32"], "team_profiles": {"gamma": "gpu"}}}
    assert _aws_problems(tmp_path, data) == ""
    cfg = load_config(tmp_path / "datathon.yaml").config
    assert [cfg.aws.profile_of(t.name, t.gpu_count) for t in cfg.team_list] == ["gpu", "cpu", "gpu"]
    assert cfg.aws.profiles["gpu"].instance_type == "g4dn.12xlarge" and cfg.aws.profiles["gpu"].image_id is None
    assert _aws_problems(tmp_path, {**data, "aws": {"ssh_from": ["0.0.0.0/0"], "ssh_from_anywhere": True}}) == ""
    local = {**data, "provider": "local", "teams": {"count": 2}, "aws": {}}
    assert "only for provider: aws" in _aws_problems(tmp_path, local)


def test_event_dates_are_checked(tmp_path):
    out = _aws_problems(tmp_path, {**AWS_BASE, "aws": {}, "dates": {"start": "2026-05-04", "end": "2026-05-02"}})
    assert "end 2026-05-02 is before start 2026-05-04" in out and "datathon.yaml:" in out
    assert "dates.start" in _aws_problems(tmp_path, {**AWS_BASE, "aws": {}, "dates": {"start": "May", "end": "x"}})
