"""Write every team's and mentor's handout (HTML, Markdown, and each part's extra files such as pgAdmin's
servers.json) and the organizer roster. The sections come from the parts of the event, in the order the provider
makes them; this module knows none of them."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from datathon.core.context import Context
from datathon.core.handout import Handout
from datathon.core.part import Part
from datathon.core.roster import people
from datathon.core.state import write_private

ROSTER_FIRST = ["kind", "name", "title", "members", "emails"]
# The order a reader expects; any other column a part adds comes after these.
ROSTER_KNOWN = ["db_user", "db_password", "host", "port", "databases", "sslmode", "workspace"]


@dataclass
class HandoutFiles:
    name: str
    kind: str
    html: Path
    markdown: Path
    extra: dict[str, Path] = field(default_factory=dict)  # e.g. {"pgadmin-servers.json": path}


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("datathon.handouts", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_handouts(ctx: Context, parts: list[Part]) -> tuple[list[HandoutFiles], Path]:
    """Render all handouts into the state folder (files 0600); a sheet that would not change is not rewritten.
    Returns them and the roster path."""
    config = ctx.config
    out_dir = ctx.state.handouts_dir

    def secret(name: str) -> str:
        return ctx.state.secret(name)

    env = _env()
    html_t, md_t = env.get_template("handout.html.j2"), env.get_template("handout.md.j2")
    members = {t.name: [(m.name, m.email or "") for m in t.members] for t in config.team_list}
    titles = {t.name: t.title or "" for t in config.team_list}
    emails = {m.name: m.email or "" for m in config.mentors}
    files: list[HandoutFiles] = []
    rows: list[dict[str, str]] = []
    for member in people(config):
        sections = sorted((s for p in parts for s in p.handout(member, secret)), key=lambda s: s.order)
        handout = Handout(event=config.event, title=config.title or config.event, kind=member.kind, name=member.name,
                          members=members.get(member.name, []) if member.kind == "team" else [], sections=sections,
                          display=titles.get(member.name, "") if member.kind == "team" else "")
        stem = f"{member.kind}-{member.name}"
        f = HandoutFiles(member.name, member.kind, out_dir / f"{stem}.html", out_dir / f"{stem}.md")
        write_private(f.html, html_t.render(h=handout), unless_same=True)
        write_private(f.markdown, md_t.render(h=handout), unless_same=True)
        for part in parts:
            for suffix, text in part.files(member).items():
                f.extra[suffix] = out_dir / f"{stem}-{suffix}"
                write_private(f.extra[suffix], text, unless_same=True)
        files.append(f)
        people_of = members.get(member.name, []) if member.kind == "team" else []
        row = {"kind": member.kind, "name": member.name,
               "title": titles.get(member.name, "") if member.kind == "team" else "", "members": "; ".join(n for n, _ in people_of),
               "emails": "; ".join(e for _, e in people_of if e) or emails.get(member.name, "")}
        for part in parts:
            row.update(part.roster(member, secret))
        row["handout"] = f.html.name
        rows.append(row)
    extra = sorted({k for r in rows for k in r} - set(ROSTER_FIRST) - set(ROSTER_KNOWN) - {"handout"})
    columns = ROSTER_FIRST + [k for k in ROSTER_KNOWN if any(k in r for r in rows)] + extra + ["handout"]
    roster = io.StringIO()
    writer = csv.DictWriter(roster, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    roster_path = out_dir / "roster.csv"
    write_private(roster_path, roster.getvalue(), unless_same=True)
    for part in parts:
        for name, data in part.shared_files().items():  # e.g. the server's CA certificate
            write_private(out_dir / name, data, unless_same=True)
    remove_departed(out_dir, {f"{f.kind}-{f.name}" for f in files})
    return files, roster_path


def remove_departed(out_dir: Path, stems: set[str]) -> list[Path]:
    """The sheets of members no longer in the file: they hold a password, so they go with the member."""
    gone = []
    for path in sorted(out_dir.glob("*")):
        if not path.name.startswith(("team-", "mentor-")) or not path.is_file():
            continue
        if not any(path.name.startswith((f"{stem}.", f"{stem}-")) for stem in stems):
            path.unlink()
            gone.append(path)
    return gone
