"""Found while trying the demo during a test run: `down` swept the files of removed users' uids after deleting the
users, and a user made meanwhile (another event's `up`) was given a freed uid and lost its home. A uid is swept
only while the event's own user holds it (or, for a user an interrupted run already deleted, while nobody does)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from datathon.workspaces import remnants

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="makes Unix users: needs root")

USER = "uidreuse_new"


@pytest.fixture
def newcomer():
    subprocess.run(["userdel", "--remove", USER], capture_output=True)
    subprocess.run(["useradd", "--create-home", USER], check=True, capture_output=True)
    entry = pwd.getpwnam(USER)
    planted = Path("/var/tmp") / f"{USER}-work.csv"
    planted.write_text("a new user's work\n")
    os.chown(planted, entry.pw_uid, entry.pw_gid)
    try:
        yield entry, planted
    finally:
        planted.unlink(missing_ok=True)
        subprocess.run(["userdel", "--remove", USER], capture_output=True)


def test_a_uid_given_to_someone_else_is_never_swept(newcomer):
    entry, planted = newcomer
    # The event remembers a deleted user of this uid (nobody should hold it): someone does now, so nothing goes.
    removed, left = remnants.remove_files({entry.pw_uid: None})
    assert removed == [] and left == [] and planted.exists() and Path(entry.pw_dir).exists()
    # Held by another name than the event's user: the same.
    removed, left = remnants.remove_files({entry.pw_uid: "some_event_team"})
    assert removed == [] and planted.exists()
    # Held by the named user (the event's own, not yet deleted): its files go, everywhere.
    removed, left = remnants.remove_files({entry.pw_uid: USER})
    assert planted in removed and not planted.exists() and left == []
