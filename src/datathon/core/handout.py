"""What a handout holds, independent of how it is printed.

Each part of the event contributes its sections per team or mentor (`Part.handout`); the templates render any
section generically."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Item:
    label: str
    value: str
    secret: bool = False  # printed on the handout, never on the terminal


@dataclass
class Snippet:
    title: str
    language: str  # shell, python, r, text
    code: str


@dataclass
class Section:
    key: str
    title: str
    intro: str = ""
    items: list[Item] = field(default_factory=list)
    snippets: list[Snippet] = field(default_factory=list)
    order: int = 50  # where it goes on the sheet: where to log in first (10), then the data (20, 30, ...)


@dataclass
class Handout:
    event: str
    title: str
    kind: str  # team or mentor
    name: str
    members: list[tuple[str, str]]  # (name, email)
    sections: list[Section]
    display: str = ""  # the team's display name (its `title:`, e.g. from the registration sheet)
