"""The registration sheet -> the event's teams: every problem at once with its row; display names become titles
(handouts, roster, status) and safe names are derived. Config validation: duplicates at their own line, plain
email messages."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from datathon.config import load_config
from datathon.config.registration import read_registration, safe_name
from datathon.errors import ConfigError

HEADER = ["Team", "Display Name", "Member Name", "E-mail", "GPU (yes/no)"]


def sheet_rows(n_teams: int = 10, per_team: int = 4) -> list[list[str]]:
    titles = ["ED Triage", "Sepsis Early Warning", "ICU Readmission", "Café Delirium", "2nd Opinion",
              "Fluids & Pressors", "AKI Watch", "Ventilator Weaning", "Pain Scores", "Ward Falls"]
    rows = []
    for t in range(n_teams):
        for m in range(per_team):
            rows.append([titles[t], titles[t], f"Member {t}-{m}", f"m{t}{m}@example.org",
                         "yes" if t == 0 and m == 0 else "no"])
    return rows


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_forty_bad_rows_give_every_problem_at_once_with_its_row(tmp_path):
    rows = sheet_rows()  # 40 rows: 10 teams of 4; row numbers as a spreadsheet shows them (header = row 1)
    assert len(rows) == 40
    rows[6][3] = "m00@example.org"  # row 8: an email already on row 2
    rows[11] = list(rows[10])  # row 13: the same member twice in one team
    rows[11][3] = "other@example.org"
    rows[20][3] = "bob.example.org"  # row 22: no @
    rows[25][3] = "ann @example.org"  # row 27: a space
    rows[30][3] = "x@y"  # row 32: no domain
    rows[35][4] = "maybe"  # row 37
    rows[38][0] = ""  # row 40: no team
    # the sheet without an email column at all is one problem (named); with it, each bad row is named
    found = read_registration(write_csv(tmp_path / "reg.csv", HEADER, rows)).problems
    text = "\n".join(found)
    assert "row 8: m00@example.org is registered twice (also on row 2)" in text, text
    assert "row 13: Member 2-2 is listed twice in team 'ICU Readmission' (also on row 12)" in text, text
    assert "row 22: 'bob.example.org' is not an email address: it has no @" in text, text
    assert "row 27: 'ann @example.org' is not an email address: it holds a space" in text, text
    assert "row 32: 'x@y' is not an email address: the part after @ is not a domain" in text, text
    assert "row 37: GPU 'maybe' is not yes or no" in text, text
    assert "row 40: the team is empty" in text, text
    assert len(found) == 7, found
    assert "pattern" not in text and "String should match" not in text

    no_email = [[r[0], r[1], r[2], r[4]] for r in rows]
    found = read_registration(write_csv(tmp_path / "reg2.csv", ["team", "display_name", "name", "gpu"],
                                        no_email)).problems
    assert found[0].endswith("row 1: no email column (the header has: team, display_name, name, gpu; accepted "
                             "names include email, emailaddress, mail, memberemail)"), found
    # the other rows' problems come with it, in the same message
    assert any("row 40: the team is empty" in p for p in found) and any("row 37: GPU" in p for p in found)


def test_header_spellings_safe_names_and_titles(tmp_path):
    rows = [["ED Triage", "Triage in the ED", "Ana", "ana@example.org", "Yes"],
            ["ed-triage", "", "Ben", "ben@example.org", ""],
            ["2nd Opinion", "", "Cy", "cy@example.org", "no"],
            ["public", "", "Di", "di@example.org", "no"]]
    for header in (HEADER, ["team_name", "title", "participant", "email address", "needs gpu"]):
        reg = read_registration(write_csv(tmp_path / "r.csv", header, rows))
        assert reg.problems == []
        assert [(t.name, t.title, t.gpu) for t in reg.teams] == [
            ("ed_triage", "Triage in the ED", True), ("ed_triage_2", "ed-triage", False),
            ("t_2nd_opinion", "2nd Opinion", False), ("team_public", "public", False)]
    assert safe_name("Ünïcode Team — Ω", set()) == "unicode_team"
    assert len(safe_name("x" * 80, set())) <= 30


def test_teams_file_is_read_by_every_verb_and_problems_carry_rows(tmp_path):
    write_csv(tmp_path / "reg.csv", HEADER, sheet_rows(3, 2))
    path = tmp_path / "datathon.yaml"
    path.write_text("event: og1\nteams_file: reg.csv\ndatabases: [{name: db}]\n"
                    "workspaces: {port: 8123}\n")
    cfg = load_config(path).config
    assert [(t.name, t.title) for t in cfg.team_list] == [
        ("ed_triage", "ED Triage"), ("sepsis_early_warning", "Sepsis Early Warning"),
        ("icu_readmission", "ICU Readmission")]
    assert cfg.team_list[0].gpu_count == 1 and cfg.team_list[0].members[1].email == "m01@example.org"
    # a problem in the sheet and one in the YAML: both, at once
    rows = sheet_rows(3, 2)
    rows[3][3] = "nope"
    write_csv(tmp_path / "reg.csv", HEADER, rows)
    path.write_text("event: og1\nteams_file: reg.csv\ndatabases: [{name: db}]\npolcy: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = "\n".join(err.value.problems)
    assert "reg.csv row 5: 'nope' is not an email address" in text and ":4: unknown key 'polcy'" in text, text
    path.write_text("event: og1\nteams_file: reg.csv\nteams: {count: 2}\ndatabases: [{name: db}]\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "teams_file and teams are both given" in err.value.problems[0]


def test_duplicate_names_at_their_own_line_with_every_other_problem(tmp_path):
    path = tmp_path / "datathon.yaml"
    path.write_text("event: og2\nteams:\n  - name: alpha\n  - name: beta\n    members:\n"
                    "      - {name: Ann, email: 'ann at example.org'}\n  - name: alpha\n"
                    "mentors:\n  - name: beta\ndatabases: [{name: db}]\npolicy: {work_mem: lots}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    found = err.value.problems
    text = "\n".join(found)
    assert ":7: teams.2.name: 'alpha' is used twice among teams and mentors (first on line 3)" in text, text
    assert ":9: mentors.0.name: 'beta' is used twice among teams and mentors (first on line 4)" in text, text
    assert ":6: teams.1.members.0.email: 'ann at example.org' is not an email address: it has no @" in text, text
    assert ":11: policy.work_mem:" in text, text
    assert "String should match pattern" not in text


def test_init_from_the_sheet_writes_the_event_or_every_problem(tmp_path):
    good = write_csv(tmp_path / "good.csv", HEADER, sheet_rows(4, 3))
    path = tmp_path / "datathon.yaml"
    run = [sys.executable, "-m", "datathon.cli", "init", "-c", str(path), "--event", "og3", "--teams-csv"]
    proc = subprocess.run([*run, str(good)], capture_output=True, text=True, env={"COLUMNS": "200",
                                                                                   "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "ed_triage" in proc.stdout and "ED Triage" in proc.stdout and "cafe_delirium" in proc.stdout
    cfg = load_config(path).config
    assert cfg.teams_file is not None and [t.title for t in cfg.team_list][3] == "Café Delirium"
    rows = sheet_rows(4, 3)
    rows[4][3] = rows[0][3]
    bad = write_csv(tmp_path / "bad.csv", HEADER[:2] + HEADER[3:], [r[:2] + r[3:] for r in rows])
    proc = subprocess.run([*run, str(bad), "--force"], capture_output=True, text=True)
    assert proc.returncode == 1 and "nothing was written" in proc.stderr
    assert "row 1: no member name column" in proc.stderr and "row 6: m00@example.org is registered twice" \
        in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_derived_names_fit_the_unix_user_name_with_workspaces(tmp_path):
    long = "Prediction of Acute Kidney Injury in the Emergency Department"
    write_csv(tmp_path / "reg.csv", HEADER, [[long, "", "Ana", "ana@example.org", "no"],
                                             [long + " II", "", "Ben", "ben@example.org", "no"]])
    path = tmp_path / "datathon.yaml"
    path.write_text("event: og_longer_name\nteams_file: reg.csv\ndatabases: [{name: db}]\nworkspaces: {port: 8123}\n")
    names = [t.name for t in load_config(path).config.team_list]
    assert all(len(f"og_longer_name_{n}") <= 32 for n in names) and len(set(names)) == 2, names
