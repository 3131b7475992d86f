"""The imaging-data section of a handout: where the datasets are, that they are read-only, and how to pull them."""

from __future__ import annotations

import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

from datathon.config import EventConfig
from datathon.core.handout import Item, Section, Snippet
from datathon.core.roster import Member, teams_group
from datathon.storage.manifest import Manifest
from datathon.storage.sync import human


@dataclass(frozen=True)
class Example:
    """A real subset of a dataset, from its manifest: what the handout's pull and read-in-place lines select."""

    prefix: str  # a folder prefix selecting part of the dataset (not all of it, where the layout allows)
    prefix_files: int
    prefix_bytes: int
    pattern: str  # the most common kind of file, e.g. *.dcm
    pattern_files: int
    total_files: int


def example_selection(manifest: Manifest) -> Example | None:
    files = manifest.files
    if not files:
        return None
    suffixes = Counter(PurePosixPath(f.path).suffix.lower() for f in files)
    suffix = next((s for s, _ in suffixes.most_common() if s), "")
    pattern = f"*{suffix}" if suffix else "*"
    matching = [f for f in files if f.path.lower().endswith(suffix)] if suffix else files
    first = PurePosixPath(matching[0].path)
    prefix, chosen = "", files
    for depth in range(1, len(first.parts)):  # the shallowest folder of a real file that is not the whole dataset
        candidate = "/".join(first.parts[:depth]) + "/"
        chosen = [f for f in files if f.path.startswith(candidate)]
        prefix = candidate
        if len(chosen) < len(files):
            break
    if not prefix:  # every file sits at the top: its own name is the only prefix
        prefix, chosen = first.as_posix(), [f for f in files if f.path == first.as_posix()]
    return Example(prefix, len(chosen), sum(f.size for f in chosen), pattern,
                   sum(1 for f in files if f.path.lower().endswith(suffix)) if suffix else len(files), len(files))


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


def storage_section(config: EventConfig, member: Member, manifests: dict[str, Manifest] | None = None
                    ) -> Section | None:
    """`manifests`: what the store holds now (the examples select real files of it); a dataset not pushed yet
    gets only the line that fetches everything."""
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
    manifest = (manifests or {}).get(first)
    ex = example_selection(manifest) if manifest is not None else None
    if ex is None:
        snippets = [Snippet("Pull the dataset into your workspace (parallel, each file checked against the "
                            "manifest, resumable)", "shell", pull_command(config, first))]
    else:
        pattern = shlex.quote(ex.pattern)
        snippets = [Snippet(
            "Pull a subset into your workspace (parallel, each file checked against the manifest, resumable)",
            "shell", f"# {ex.prefix_files:,} of {ex.total_files:,} files ({human(ex.prefix_bytes)}):\n"
                     f"{pull_command(config, first, prefix=ex.prefix)}\n"
                     f"# only the {ex.pattern} files ({ex.pattern_files:,}):\n"
                     f"{pull_command(config, first)} --manifest-filter {pattern}\n"
                     f"# everything:\n{pull_command(config, first)}")]
    if cfg.backend == "s3":
        sub = ex.prefix if ex is not None and ex.prefix.endswith("/") else ""
        src = f"s3://{cfg.bucket}/{cfg.prefix}{first}/{sub}"
        endpoint_opt = f" --endpoint-url {cfg.endpoint_url}" if cfg.endpoint_url else ""
        snippets.append(Snippet("Or with the AWS CLI (no checksum check)", "shell",
                                f"aws s3 sync {src} ~/data/{first}/{sub} --region {cfg.region}{endpoint_opt}"))
    elif ex is not None:
        snippets.append(Snippet("Or read it in place (Python)", "python",
                                "from pathlib import Path\n\n"
                                f'files = sorted(Path("{where}/{first}").rglob("{ex.pattern}"))\n'
                                f"print(len(files))  # {ex.pattern_files:,}"))
    intro = (f"{access} Each dataset's manifest ({first}.manifest.json beside the data) lists every file's "
             f"size and sha256.")
    return Section("storage", "Imaging data", intro=intro, items=items, snippets=snippets, order=30)
