"""Small SVG charts drawn on the server (no JavaScript, no library): a team's sessions and disk over the last
hours, from the watcher's usage samples."""

from __future__ import annotations

from datetime import datetime
from html import escape


def series(history: list[dict], member: str, key: str) -> list[tuple[datetime, float]]:
    out = []
    for sample in history:
        value = sample.get("usage", {}).get(member, {}).get(key)
        if value is not None:
            out.append((datetime.fromisoformat(sample["time"]), float(value)))
    return out


def total(history: list[dict], key: str) -> list[tuple[datetime, float]]:
    return [(datetime.fromisoformat(s["time"]), float(sum(v.get(key) or 0 for v in s.get("usage", {}).values())))
            for s in history]


def sparkline(points: list[tuple[datetime, float]], *, width: int = 120, height: int = 24, label: str = "") -> str:
    """An inline SVG polyline; the title (hover) says the last value and the highest."""
    if len(points) < 2:
        return f'<span class="nodata" title="{escape(label)}">-</span>'
    t0, t1 = points[0][0].timestamp(), points[-1][0].timestamp()
    top = max(v for _, v in points) or 1.0
    span = (t1 - t0) or 1.0
    xy = " ".join(f"{(t.timestamp() - t0) / span * (width - 2) + 1:.1f},{height - 1 - v / top * (height - 2):.1f}"
                  for t, v in points)
    title = escape(f"{label}: now {fmt(points[-1][1], label)}, highest {fmt(top, label)}")
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{title}"><title>{title}</title><polyline fill="none" stroke="currentColor" '
            f'stroke-width="1.5" points="{xy}"/></svg>')


def fmt(value: float, label: str) -> str:
    return human_bytes(value) if "disk" in label or "bytes" in label else f"{value:g}"


def human_bytes(n: float | int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n}"
