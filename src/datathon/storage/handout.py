"""The imaging-data section of a handout: where the datasets are, that they are read-only, and how to pull them."""

from __future__ import annotations

import shlex

from datathon.config import EventConfig
from datathon.core.handout import Item, Section, Snippet
from datathon.core.roster import Member, teams_group


def pull_command(config: EventConfig, dataset: str, *, prefix: str | None = None) -> str:
    """The exact `datathon data pull` line a team runs in its workspace (no event file needed there)."""
    cfg = config.storage
    args = ["datathon", "data", "pull", dataset, "--from", cfg.location(config.event)]
    if cfg.backend == "s3":
        if cfg.region != "us-east-1":
            args += ["--region", cfg.region]
        if cfg.endpoint_url:
            args += ["--endpoint-url", cfg.endpoint_url]
    args += ["--to", f"~/data/{dataset}"]
    if prefix:
        args += ["--prefix", prefix]
    return " ".join(a if a.startswith("~/") else shlex.quote(a) for a in args)


def storage_section(config: EventConfig, member: Member) -> Section | None:
    cfg = config.storage
    if cfg is None or not cfg.datasets:
        return None
    where = cfg.location(config.event)
    names = [d.name for d in cfg.datasets]
    items = [Item("Imaging data (read-only)", where), Item("Datasets", ", ".join(names))]
    if cfg.backend == "s3":
        items.append(Item("Region", cfg.region))
        if cfg.endpoint_url:
            items.append(Item("Endpoint", cfg.endpoint_url))
        access = "Your workspace's role may list and read this bucket and nothing else"
        access += ("; nobody but the organizers can change or delete what is in it." if cfg.organizer_role_arn
                   else ". Please do not change it: this bucket has no policy that refuses writes.")
    else:
        access = (f"The folder belongs to root and the group {teams_group(config.event)}: you can read it in place, "
                  f"nobody but the organizers can change it.")
    first = names[0]
    snippets = [
        Snippet("Pull a subset into your workspace (parallel, each file checked against the manifest, resumable)",
                "shell", f"{pull_command(config, first, prefix='files/p10/')}\n"
                         f"# everything:\n{pull_command(config, first)}\n"
                         f"# only some files: add --manifest-filter '*.jpg'"),
    ]
    if cfg.backend == "s3":
        src = f"s3://{cfg.bucket}/{cfg.prefix}{first}/files/p10/"
        endpoint_opt = f" --endpoint-url {cfg.endpoint_url}" if cfg.endpoint_url else ""
        snippets.append(Snippet("Or with the AWS CLI (no checksum check)", "shell",
                                f"aws s3 sync {src} ~/data/{first}/files/p10/ --region {cfg.region}{endpoint_opt}"))
    else:
        snippets.append(Snippet("Or read it in place (Python)", "python",
                                "from pathlib import Path\n\n"
                                f'images = sorted(Path("{where}/{first}").rglob("*.jpg"))\nprint(len(images))'))
    intro = (f"{access} Each dataset's manifest ({first}.manifest.json beside the data) lists every file's "
             f"size and sha256.")
    return Section("storage", "Imaging data", intro=intro, items=items, snippets=snippets, order=30)
