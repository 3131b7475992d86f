"""What becomes of each statement of a dump made on another server, decided before anything runs.

A dump names the roles of the server it was made on (`ALTER ... OWNER TO postgres`, `GRANT ... TO analyst`) and
may carry statements this server refuses. As `pg_restore --no-owner --no-privileges` does for archives, ownership
and the dump's own privileges are left out: everything is created by the event's data owner, and the tenancy's
grants apply afterwards as for every source. Statements this server would refuse are found by reading the whole
dump first, and reported together, by line, with the fix, before anything is restored.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from datathon.dumps.reader import GZIP_MAGIC, ZSTD_MAGIC, Copy, Item, Meta, Statement

_ID = r'(?:"(?:[^"]|"")+"|[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)'

# Left out, with the reason printed in the summary: (pattern on the statement's head, what it is).
LEFT_OUT = [
    (re.compile(r"^ALTER (?!DEFAULT PRIVILEGES).* OWNER TO \S+;$"), "ownership (the data owner owns everything)"),
    (re.compile(r"^(GRANT|REVOKE) "), "the dump's own privileges (the event's grants apply)"),
    (re.compile(r"^ALTER DEFAULT PRIVILEGES "), "the dump's own privileges (the event's grants apply)"),
    (re.compile(r"^(SET|RESET) (SESSION AUTHORIZATION|ROLE)\b"), "role switches (everything runs as the data owner)"),
    (re.compile(r"^(BEGIN|COMMIT|END|START TRANSACTION)\b[^;]*;$"),
     "transaction control (the whole dump restores in one transaction)"),
    (re.compile(r"^SET DEFAULT_TABLESPACE\b"), "tablespaces (this server's default is used)"),
    (re.compile(r"^(CREATE|ALTER|DROP) (PUBLICATION|SUBSCRIPTION) "),
     "publications and subscriptions (replication settings of the dump's server)"),
    (re.compile(r"^SECURITY LABEL "), "security labels"),
]
META_LEFT_OUT = {"\\restrict", "\\unrestrict"}  # pg_dump's guard for psql; datathon runs no meta-command at all
_SET = re.compile(r"^SET (?:SESSION )?(" + _ID + r"(?:\." + _ID + r")?)\s*(?:=|TO\b)", re.I)
_SET_CONFIG = re.compile(r"^SELECT (?:PG_CATALOG\.)?SET_CONFIG\('([^']+)'", re.I)
_CREATE_EXT = re.compile(r"^CREATE EXTENSION (?:IF NOT EXISTS )?(" + _ID + ")", re.I)
_COMMENT_EXT = re.compile(r"^COMMENT ON EXTENSION (" + _ID + ")", re.I)
_CREATE_SCHEMA = re.compile(r"^CREATE SCHEMA (?:IF NOT EXISTS )?(" + _ID + ")", re.I)
CREATE_TABLE = re.compile(r"^CREATE (?:UNLOGGED |FOREIGN )?TABLE ", re.I)
_DUMPED_BY = re.compile(rb"^-- Dumped by pg_dump version (\S+)", re.M)


def ident(word: str) -> str:
    return word[1:-1].replace('""', '"') if word.startswith('"') else word.lower()


def _text(stmt: Statement) -> str:
    return stmt.text[:2000].decode("utf-8", "replace")


@dataclass
class ServerFacts:
    """What decides whether this server takes a statement, read once from the target database."""

    version: str
    admin_superuser: bool
    settings: dict[str, str]  # name -> context
    available: dict[str, tuple[bool, bool]]  # extension -> (needs a superuser, trusted), default version
    installed: dict[str, bool]  # extension -> the administrator may change it (owner, or superuser)

    @classmethod
    def read(cls, conn: psycopg.Connection) -> ServerFacts:
        version, superuser = conn.execute(
            "SELECT current_setting('server_version'), rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
        settings = dict(conn.execute("SELECT name, context FROM pg_settings").fetchall())
        available = {n: (s, t) for n, s, t in conn.execute(
            "SELECT a.name, v.superuser, v.trusted FROM pg_available_extensions a"
            " JOIN pg_available_extension_versions v ON v.name = a.name AND v.version = a.default_version")}
        installed = dict(conn.execute(
            "SELECT extname, pg_has_role(extowner, 'USAGE') OR %s FROM pg_extension", (superuser,)).fetchall())
        return cls(version, superuser, settings, available, installed)


@dataclass
class Problem:
    line: int
    what: str  # the statement, named
    why: str
    removable: bool  # deleting the line is a fix


@dataclass
class Decision:
    action: str  # run (as the data owner), admin (as the administrator), skip
    why: str = ""


@dataclass
class Policy:
    """Decides each statement against the server's facts; collects what is left out and what is refused."""

    facts: ServerFacts
    made_by: str = ""  # pg_dump's version, from the dump's header comment
    problems: list[Problem] = field(default_factory=list)
    left_out: Counter = field(default_factory=Counter)
    schemas: list[str] = field(default_factory=list)  # CREATE SCHEMA, in order
    tables: int = 0  # CREATE TABLE statements
    copies: int = 0  # tables with data
    created_extensions: set[str] = field(default_factory=set)

    def refuse(self, line: int, what: str, why: str, *, removable: bool = True) -> Decision:
        self.problems.append(Problem(line, what, why, removable))
        return Decision("skip", why)

    def decide(self, item: Item) -> Decision:
        if isinstance(item, Meta):
            if item.command in META_LEFT_OUT:
                return Decision("skip", "psql guard")
            return self.refuse(item.line, f"psql meta-command {item.command}",
                               "datathon does not run psql meta-commands (\\connect comes with `pg_dump --create`)",
                               removable=False)
        stmt = item.statement if isinstance(item, Copy) else item
        if isinstance(item, Copy):
            self.copies += 1
            return Decision("run")
        head = stmt.head
        for pattern, what in LEFT_OUT:
            if pattern.search(head):
                self.left_out[what] += 1
                return Decision("skip", what)
        if head.startswith(("CREATE DATABASE ", "ALTER DATABASE ", "DROP DATABASE ")):
            return self.refuse(stmt.line, head.split(" ", 2)[0] + " DATABASE",
                               "the dump was made with `pg_dump --create`; datathon restores into the event's "
                               "database", removable=False)
        if head.startswith("ROLLBACK"):
            return self.refuse(stmt.line, "ROLLBACK", "it would undo the restore", removable=True)
        if head.startswith(("CREATE ROLE ", "ALTER ROLE ", "CREATE USER ", "DROP ROLE ")):
            return self.refuse(stmt.line, head.split(" ", 2)[0] + " ROLE",
                               "roles belong to the event (a pg_dumpall file is not a database dump)", removable=False)
        if head.startswith(("SET ", "SELECT PG_CATALOG.SET_CONFIG(", "SELECT SET_CONFIG(")):
            return self._setting(stmt)
        if head.startswith("CREATE EXTENSION "):
            return self._extension(stmt)
        if head.startswith("COMMENT ON EXTENSION "):
            return self._extension_comment(stmt)
        if head.startswith(("CREATE EVENT TRIGGER ", "ALTER EVENT TRIGGER ")):
            return self.refuse(stmt.line, "EVENT TRIGGER", "event triggers need a superuser")
        if m := _CREATE_SCHEMA.match(_text(stmt)):
            self.schemas.append(ident(m.group(1)))
        elif CREATE_TABLE.match(head):
            self.tables += 1
        return Decision("run")

    def _setting(self, stmt: Statement) -> Decision:
        text = _text(stmt)
        m = _SET.match(text) or _SET_CONFIG.match(text)
        if not m:
            return Decision("run")
        name = m.group(1).lower()
        context = self.facts.settings.get(name)
        if context is None and "." not in name:  # a dotted name is a custom setting: any server takes it
            newer = f" (the dump was made by pg_dump {self.made_by})" if self.made_by else ""
            return self.refuse(stmt.line, f"SET {name}",
                               f"PostgreSQL {self.facts.version} has no setting {name}{newer}")
        if context in ("superuser", "postmaster", "sighup", "internal", "backend", "superuser-backend"):
            return self.refuse(stmt.line, f"SET {name}", f"{name} cannot be set by the data owner ({context})")
        return Decision("run")

    def _extension(self, stmt: Statement) -> Decision:
        m = _CREATE_EXT.match(_text(stmt))
        name = ident(m.group(1)) if m else "?"
        if name in self.facts.installed or name in self.created_extensions:
            self.left_out["extensions already installed here"] += 1
            return Decision("skip", "installed")
        if name not in self.facts.available:
            return self.refuse(stmt.line, f"CREATE EXTENSION {name}",
                               f"extension {name} is not installed on this server: install its package (Debian: "
                               f"postgresql-15-{name} or postgresql-contrib), or delete the line if the data does "
                               "not need it")
        superuser, trusted = self.facts.available[name]
        if superuser and not trusted and not self.facts.admin_superuser:
            return self.refuse(stmt.line, f"CREATE EXTENSION {name}",
                               f"extension {name} needs a superuser: have one (on RDS, the master user) run "
                               f"`CREATE EXTENSION {name}` in this database first; the next `up` finds it there",
                               removable=False)
        self.created_extensions.add(name)
        return Decision("admin", "extensions are made by the administrator")

    def _extension_comment(self, stmt: Statement) -> Decision:
        m = _COMMENT_EXT.match(_text(stmt))
        name = ident(m.group(1)) if m else "?"
        if name in self.created_extensions or self.facts.installed.get(name):
            return Decision("admin", "the administrator owns the extension")
        if name in self.facts.installed:
            return self.refuse(stmt.line, f"COMMENT ON EXTENSION {name}",
                               f"extension {name} belongs to another role here, which alone may change its comment")
        return Decision("skip", "its extension is refused")  # already reported at CREATE EXTENSION

    def fix(self, path: Path) -> str:
        """How to get past the problems found: delete the lines where that fixes it, else what each one says."""
        lines = sorted({p.line for p in self.problems if p.removable})
        if not lines or any(not p.removable for p in self.problems):
            return "fix what each line says, then run `datathon up` again; nothing was restored"
        edits = " ".join(f"-e {n}d" for n in lines)
        with open(path, "rb") as fh:
            magic = fh.read(4)
        fixed = path.name.replace(".sql", "-fixed.sql")
        if magic.startswith(GZIP_MAGIC):
            cmd = f"zcat {path.name} | sed {edits} | gzip > {fixed}"
        elif magic == ZSTD_MAGIC:
            cmd = f"zstd -dc {path.name} | sed {edits} | zstd -q -o {fixed}"
        else:
            cmd = f"sed -i {edits} {path.name}"
            fixed = path.name
        return (f"delete those lines ({cmd}), point pg_dump: at {fixed} and run `datathon up` again; "
                "nothing was restored")

    def report(self, path: Path) -> str:
        shown = [f"line {p.line}: {p.what}: {p.why}" for p in self.problems[:20]]
        more = f"; and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        return (f"{path.name} holds {len(self.problems)} statement(s) this server refuses: "
                + "; ".join(shown) + more)


def dumped_by(head: bytes) -> str:
    m = _DUMPED_BY.search(head)
    return m.group(1).decode() if m else ""
