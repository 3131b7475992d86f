"""`datathon image build`: the golden image of the team machines (AWS).

First everything the machines need is brought up (what `up` makes, but the machines: network, role, keys, the
database's logins). Then one builder instance boots from the profile's base image with the workspace bootstrap as
user data, for the first team (so the probes reach the database as that team); once the bootstrap is done, the
machine probes run on it over SSH with the team's key. Only if they pass is it generalized (the team's user and
home removed, the environment kept) and made into an AMI, tagged with the event and the digest of what it holds;
the builder is then terminated. A second build with the same bootstrap and base image reuses the image."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from datathon.check.machine_probes import MachineSession, run_machine_probes
from datathon.check.model import ProbeResult
from datathon.commands.plan import ready_provider
from datathon.commands.up import confirm
from datathon.core import ssh
from datathon.core.context import Context
from datathon.core.plan import Change, Plan
from datathon.engine import apply_up, plan_up
from datathon.errors import ProvisionError
from datathon.ui import print_plan
from datathon.workspaces import names as ws_names
from datathon.workspaces.bootstrap import Layout, image_digest, render_user_data, user_data_bytes
from datathon.workspaces.bootstrap.secrets import deliver_pgpass

POLL = 10.0  # seconds between looks at a booting builder


@dataclass
class ImageBuildResult:
    image: str
    name: str
    digest: str
    reused: bool
    builder: str | None = None
    base_image: str | None = None
    probes: list[ProbeResult] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"image": self.image, "name": self.name, "digest": self.digest, "reused": self.reused,
                "builder": self.builder, "base_image": self.base_image, "seconds": round(self.seconds, 1),
                "probes": [p.as_dict() for p in self.probes]}


def build_digest(config, base_image: str) -> str:
    """The image's identity: what the bootstrap installs and the base image it starts from (the provider's, so
    that `up` finds the image this command makes)."""
    from datathon.providers.aws import golden_digest

    return golden_digest(config, base_image)


def run_image_build(ctx: Context, *, yes: bool = False, profile: str | None = None, layout: Layout = Layout(),
                    reach: Callable[[str], tuple[str, int]] | None = None) -> ImageBuildResult:
    """`reach`: the machine's public address -> where SSH reaches it (default: that address, port 22)."""
    started = time.monotonic()
    provider = ready_provider(ctx)
    kit = provider.golden_image(profile)
    if kit is None:
        raise ProvisionError(f"provider {provider.name!r} makes no machine images",
                             hint="`datathon image build` is for provider: aws")
    say = ctx.console.print
    base = kit.base_image()
    digest = build_digest(ctx.config, base.id)
    with ctx.state.lock():
        found = kit.builder.image(digest)
        if found is not None:
            if found.state != "available":
                say(f"image {found.id} is being made; waiting for it")
                found = kit.builder.wait_available(found)
            _record(ctx, found, base.id, kit.profile_name)
            return ImageBuildResult(found.id, found.name, digest, True, base_image=base.id,
                                    seconds=time.monotonic() - started)
        _prerequisites(ctx, kit.prerequisites, yes=yes)
        team = ctx.config.team_list[0].name
        role = ws_names.unix_user(ctx.config.event, team)
        password = ctx.state.secret(role, create=False)
        if password is None:
            raise ProvisionError(f"team {team} has no database login yet", hint="run `datathon up` and then this")
        script = render_user_data(ctx.config, team, endpoint=kit.endpoint, authorized_key=kit.public_key(team),
                                  layout=layout)
        builder = _builder(kit, digest, base, user_data_bytes(script), team, say)
        host, port = reach(builder.public_ip) if reach else (builder.public_ip, 22)
        known = ctx.state.secrets_dir / "known_hosts"
        key = kit.key_file(team)
        admin = ssh.SshTarget(host, port, kit.ssh_user, key, known)
        member = ssh.SshTarget(host, port, role, key, known)
        try:
            _wait_bootstrap(admin, layout, image_digest(ctx.config), kit.builder.timeout, say)
            deliver_pgpass(member, kit.endpoint, role, password)
            say(f"running the workspace probes on {builder.id} as {role}")
            results = run_machine_probes(MachineSession(member, team, role, port=layout.port,
                                                        scratch=str(layout.scratch)))
            failed = [r for r in results if r.outcome == "fail"]
            if failed:
                raise ProvisionError(f"the image builder failed {len(failed)} workspace probe(s): "
                                     + "; ".join(f"{r.probe}: {r.detail}" for r in failed),
                                     hint="no image was made; fix the cause and run `datathon image build` again")
            _generalize(admin, layout)
            say(f"making the image from {builder.id} (minutes)")
            image = kit.builder.create_image(builder, digest, description=f"datathon {ctx.config.event} workspace "
                                             f"from {base.id} ({base.name})")
        finally:
            kit.builder.terminate(builder)  # a builder never outlives its build, made or failed
        _record(ctx, image, base.id, kit.profile_name)
        return ImageBuildResult(image.id, image.name, digest, False, builder.id, base.id, results,
                                time.monotonic() - started)


def _record(ctx: Context, image, base: str, profile: str) -> None:
    ctx.state.record("image", image.id, created=True, image_name=image.name, digest=image.digest, base_image=base,
                     profile=profile)


def _prerequisites(ctx: Context, parts: list, *, yes: bool) -> None:
    """What the machines need, as `up` makes it (shown and confirmed the same way)."""
    plan = plan_up(parts)
    if plan.pending and not yes and not plan.stopping:
        print_plan(ctx.console, plan)
        confirm(ctx, f"Apply these {len(plan.pending)} changes before building the image?", yes=yes)

    def approve(changes: list[Change], question: str) -> bool:
        print_plan(ctx.console, Plan(changes))
        confirm(ctx, question, yes=yes)
        return True

    apply_up(ctx, plan, approve=approve)


def _builder(kit, digest: str, base, user_data: bytes, team: str, say):
    """The running builder of this digest (an interrupted build's), or a new one."""
    for b in kit.builder.builders(digest):
        if b.state in ("pending", "running"):
            say(f"resuming with the image builder {b.id}")
            return kit.builder.wait_running(b)
        kit.builder.terminate(b)  # stopped half-way: start afresh
    subnet, group = kit.network()
    if not subnet or group is None:
        raise ProvisionError("the event's network is not there", hint="run `datathon plan` to see what is missing")
    b = kit.builder.launch(digest=digest, spec=kit.profile, image_id=base.id, root_device=base.root_device,
                           user_data=user_data, subnet=subnet, security_group=group,
                           instance_profile=kit.instance_profile, key_name=kit.key_name(team))
    say(f"launched the image builder {b.id} ({kit.profile.instance_type} from {base.id}); waiting for it")
    return kit.builder.wait_running(b)


def _wait_bootstrap(admin: ssh.SshTarget, layout: Layout, digest: str, timeout: int, say) -> None:
    """The bootstrap writes its digest when it is done; SSH refused while the machine boots is waited out."""
    marker = f"{layout.state_dir}/bootstrap-done"
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            res = ssh.run(admin, f"cat {marker} 2>/dev/null", timeout=60)
            if res.stdout.decode().strip() == digest:
                say("the bootstrap is done")
                return
            last = "not done yet"
        except ssh.SshError as exc:
            last = exc.message
        if time.monotonic() > deadline:
            raise ProvisionError(f"the bootstrap did not finish on {admin.host} within {timeout // 60} min "
                                 f"({last})", hint="look at /var/log/cloud-init-output.log on the builder")
        say(f"waiting for the bootstrap ({last})")
        time.sleep(POLL)


def _generalize(admin: ssh.SshTarget, layout: Layout) -> None:
    script = f"{layout.sys_root}/usr/local/lib/datathon/bootstrap.sh".replace("//", "/")
    cmd = f'if [ "$(id -u)" = 0 ]; then bash {script} generalize; else sudo -n bash {script} generalize; fi'
    res = ssh.run(admin, cmd, timeout=300)
    if res.returncode != 0:
        raise ProvisionError(f"generalizing the image builder failed: {(res.stdout + res.stderr).decode()[-500:]}",
                             hint="no image was made; run `datathon image build` again")
