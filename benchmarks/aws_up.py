"""`up`, a no-change `up` and `down` of the AWS parts for N teams on a moto server: API calls made (all, and the
mutating ones) and wall time. The baseline the issue names is the hand-built event: one console or SDK call per
resource per team; the point here is that a second `up` makes no mutating call and that calls grow with teams,
not with teams x kinds.

    .venv/bin/python benchmarks/aws_up.py [--teams 50] [--gpu-teams 10] [--same-user-data]

moto is Python on this machine and answers in milliseconds: the times measure datathon's own work and moto's,
not AWS (where RunInstances and the status-check wait take minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from aws_event import PROFILES, aws_data, context, provider  # noqa: E402
from moto_server import CREDENTIALS, moto_server  # noqa: E402

from datathon.engine import apply_down, apply_up, plan_down, plan_up  # noqa: E402


def run(label: str, fn) -> dict:
    t = time.monotonic()
    p, n = fn()
    wall = time.monotonic() - t
    calls = sum(p.session.calls.values())
    mutating = sum(p.session.mutating_calls.values())
    top = ", ".join(f"{k} {v}" for k, v in sorted(p.session.mutating_calls.items(), key=lambda x: -x[1])[:4])
    print(f"| {label} | {n} | {calls} | {mutating} | {wall:.1f} s | {top or '-'} |", flush=True)
    return {"calls": calls, "mutating": mutating, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--teams", type=int, default=50)
    ap.add_argument("--gpu-teams", type=int, default=10)
    ap.add_argument("--same-user-data", action="store_true",
                    help="one user data for all teams (one RunInstances per profile)")
    args = ap.parse_args()
    teams = [{"name": f"t{i:02d}", "gpus": 1 if i <= args.gpu_teams else 0} for i in range(1, args.teams + 1)]
    with moto_server(env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}) as url, \
            tempfile.TemporaryDirectory() as tmp:
        os.environ.update(CREDENTIALS)
        os.environ["AWS_ENDPOINT_URL"] = url
        ctx = context(Path(tmp), aws_data("awbench", teams=teams, aws={"profiles": PROFILES}))

        def up():
            p = provider(ctx, same_user_data=args.same_user_data)
            n, _ = apply_up(ctx, plan_up(p.aws_parts()), approve=lambda c, q: True)
            return p, n

        def down():
            p = provider(ctx)
            n, left, _ = apply_down(ctx, plan_down(p.aws_parts()))
            assert not left, left
            return p, n

        print(f"{args.teams} teams ({args.gpu_teams} GPU), user data "
              f"{'shared' if args.same_user_data else 'per team (the bootstrap)'}\n")
        print("| run | changes | API calls | mutating calls | wall | most mutating calls |")
        print("|---|---:|---:|---:|---:|---|")
        run("up", up)
        second = run("up again (no change)", up)
        run("down (and the proof nothing tagged is left)", down)
        if second["mutating"]:
            sys.exit("a second up made mutating calls")


if __name__ == "__main__":
    main()
