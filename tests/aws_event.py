"""An AWS event for tests: a context on a moto server, its provider's AWS parts driven through the engine (the
database of provider aws is an external server, which these tests do not need), and a driver for subprocesses
(crash tests: `python tests/aws_event.py up FOLDER` under DATATHON_DIE_AT)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import yaml
from moto_server import CREDENTIALS, moto_server
from rich.console import Console

from datathon.config import load_config
from datathon.core.context import Context
from datathon.core.state import StateStore
from datathon.engine import apply_down, apply_up, plan_down, plan_up
from datathon.providers import get_provider



# A moto server per test module (with AWS's managed policies, which the machines' role attaches), and a test's
# environment pointed at it. Test modules import both fixtures.

@pytest.fixture(scope="module")
def moto_url():
    with moto_server(env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}) as url:
        yield url


@pytest.fixture
def aws(moto_url, monkeypatch):
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    return moto_url


# moto ships two "Deep Learning AMI" images (not the current Base OSS ones): the profiles find theirs by name
PROFILES = {"cpu": {"instance_type": "m5.8xlarge", "image": "Deep Learning AMI Ubuntu*"},
            "gpu": {"instance_type": "g4dn.12xlarge", "image": "Deep Learning AMI Ubuntu*", "gpu": True}}


def aws_data(event: str, *, teams=None, aws: dict | None = None, **extra) -> dict:
    return {"event": event, "provider": "aws",
            "teams": teams or [{"name": "alpha", "gpus": 1}, {"name": "beta"}, {"name": "gamma"}],
            "database": {"server": "external", "admin_dsn": "host=db.example.org port=5432 user=admin dbname=postgres",
                         "public_host": "db.example.org"},
            "databases": [{"name": f"{event}db"}],
            "aws": {"region": "us-east-1", "ssh_from": ["203.0.113.0/24"], "boot_timeout": "2min",
                    "profiles": PROFILES, **(aws or {})},
            **extra}


def context(folder: Path, data: dict) -> Context:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "datathon.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    loaded = load_config(path, check_paths=False)
    return Context(loaded=loaded, state=StateStore(loaded.base_dir, loaded.config.event),
                   console=Console(file=io.StringIO(), width=200))


def provider(ctx: Context, *, same_user_data: bool = False):
    p = get_provider(ctx)
    if same_user_data:  # one user data for every team: the teams of a profile share one RunInstances
        p.user_data = lambda team: b"#!/bin/sh\ntrue\n"
    return p


def up(ctx: Context, *, same_user_data: bool = False, delete_images: bool = False):
    p = provider(ctx, same_user_data=same_user_data)
    plan = plan_up(p.aws_parts())
    applied, ran = apply_up(ctx, plan, approve=lambda changes, q: True)
    return p, applied, ran


def down(ctx: Context, *, delete_images: bool = False):
    p = provider(ctx)
    plan = plan_down(p.aws_parts(delete_images=delete_images))
    removed, left, proof = apply_down(ctx, plan)
    return p, removed, left


if __name__ == "__main__":  # a subprocess `up`, for crash tests
    verb, folder = sys.argv[1], Path(sys.argv[2])
    ctx = context(folder, yaml.safe_load((folder / "datathon.yaml").read_text()))
    if verb == "up":
        up(ctx, same_user_data="--same-user-data" in sys.argv)
    print("done")
