"""What `status` reports, whichever part observed it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ComponentStatus:
    component: str
    name: str
    state: str  # running, stopped, missing, ok, error, not enforced ...
    detail: str = ""
    healthy: bool = True
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "component": self.component,
            "name": self.name,
            "state": self.state,
            "detail": self.detail,
            "healthy": self.healthy,
            **({"extra": self.extra} if self.extra else {}),
        }
