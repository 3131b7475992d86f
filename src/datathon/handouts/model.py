"""What a handout holds, independent of how it is printed.

Each part of the environment contributes one Section per team. This is the place later parts slot in: the
workspace (hub address, login), SSH keys and imaging-data access each add a builder to SECTION_BUILDERS in
`build.py`; the templates render any section generically.
"""

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


@dataclass
class Handout:
    event: str
    title: str
    kind: str  # team or mentor
    name: str
    members: list[tuple[str, str]]  # (name, email)
    sections: list[Section]
