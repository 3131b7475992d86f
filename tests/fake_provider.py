"""A provider that runs nowhere: its parts keep their resources in an in-memory 'cloud'. It exists to prove that a
provider slots in through the Provider and Part contracts alone: the tests drive plan -> up -> status -> down
through the real commands and engine, which know nothing of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from datathon.core.handout import Item, Section
from datathon.core.part import Part, PartStatus
from datathon.core.plan import Change
from datathon.core.roster import Member, people
from datathon.core.status import ComponentStatus
from datathon.providers.base import Provider


@dataclass
class Cloud:
    machines: dict[str, str] = field(default_factory=dict)  # name -> "running" | "stopped"
    buckets: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)


CLOUD = Cloud()  # what the fake cloud holds, across provider instances (as a real cloud would)


@dataclass
class MachineRow:
    name: str
    state: str

    @property
    def healthy(self) -> bool:
        return self.state == "running"

    def as_dict(self) -> dict:
        return {"name": self.name, "state": self.state}


class Machines(Part):
    """One machine per team, named after its login; needs the bucket it reads from."""

    name = "machines"
    after = ("bucket",)

    def __init__(self, wanted: list[str]) -> None:
        self.wanted = wanted

    def observe(self, purpose: str = "plan") -> dict[str, str]:
        return dict(CLOUD.machines)

    def plan(self, facts: dict[str, str]) -> list[Change]:
        out = []
        for name in self.wanted:
            state = facts.get(name)
            if state is None:
                out.append(Change("machine", name, "create", "a machine for the team", run=lambda n=name: self._set(n)))
            elif state != "running":
                out.append(Change("machine", name, "start", f"it is {state}", run=lambda n=name: self._set(n)))
            else:
                out.append(Change("machine", name, "keep", "running"))
        for name in sorted(set(facts) - set(self.wanted)):
            out.append(Change("machine", name, "drop", "its team left the event file", destructive=True,
                              run=lambda n=name: self._drop(n)))
        return out

    @staticmethod
    def _set(name: str) -> None:
        if "fake-bucket" not in CLOUD.buckets:
            raise AssertionError("a machine was made before the bucket it needs")
        CLOUD.calls.append(f"run {name}")
        CLOUD.machines[name] = "running"

    @staticmethod
    def _drop(name: str) -> None:
        CLOUD.calls.append(f"terminate {name}")
        CLOUD.machines.pop(name, None)

    def status(self, facts: dict[str, str]) -> PartStatus:
        rows = [MachineRow(n, facts.get(n, "missing")) for n in self.wanted]
        return PartStatus([ComponentStatus("machines", "team machines", f"{sum(r.healthy for r in rows)} running")],
                          {"machines": rows})

    def teardown(self, facts: dict[str, str]) -> list[Change]:
        return [Change("machine", n, "drop", "the event ends", destructive=True, run=lambda n=n: self._drop(n))
                for n in sorted(facts)]

    def leftovers(self) -> list[str]:
        return [f"machine {n}" for n in CLOUD.machines]

    def handout(self, member: Member, secret: Callable[[str], str]) -> list[Section]:
        if member.kind != "team":
            return []
        return [Section("machine", "Your machine", items=[Item("Address", f"{member.login}.fake.example"),
                                                          Item("Password", secret(member.login), secret=True)])]

    def roster(self, member: Member, secret: Callable[[str], str]) -> dict[str, str]:
        return {"machine": f"{member.login}.fake.example"} if member.kind == "team" else {}

    def gone(self) -> list[tuple[str, str]]:
        return [("team machines", "verified gone")]


class Bucket(Part):
    name = "bucket"

    def observe(self, purpose: str = "plan") -> bool:
        return "fake-bucket" in CLOUD.buckets

    def plan(self, facts: bool) -> list[Change]:
        if facts:
            return [Change("bucket", "fake-bucket", "keep", "exists")]
        return [Change("bucket", "fake-bucket", "create", "imaging data", run=lambda: CLOUD.buckets.add("fake-bucket"))]

    def status(self, facts: bool) -> PartStatus:
        return PartStatus([ComponentStatus("storage", "fake-bucket", "ok" if facts else "missing", healthy=facts)])

    def teardown(self, facts: bool) -> list[Change]:
        return [Change("bucket", "fake-bucket", "drop", "the event ends", destructive=True,
                       run=lambda: CLOUD.buckets.discard("fake-bucket"))] if facts else []

    def leftovers(self) -> list[str]:
        return ["bucket fake-bucket"] if "fake-bucket" in CLOUD.buckets else []


class FakeProvider(Provider):
    name = "fake"

    def database_server(self):
        return None

    def parts(self, *, drop_team_data: bool = False, delete_images: bool = False,
              final_snapshot: bool = True) -> list[Part]:
        # listed out of order on purpose: the engine orders parts by what each says it comes after
        return [Machines([m.login for m in people(self.ctx.config) if m.kind == "team"]), Bucket()]
