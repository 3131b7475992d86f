"""What a failed probe most likely means and what to do about it: the top of `check`'s HTML report.

Keyed by probe id (the longest matching prefix wins): a probe that fails for many teams is one problem."""

from __future__ import annotations

from dataclasses import dataclass, field

from datathon.check.model import ProbeResult

# probe id prefix -> (likely cause, fix)
ADVICE: dict[str, tuple[str, str]] = {
    "db.login": ("the team's login or password differs from its handout, the server is down, or pg_hba.conf "
                 "does not list the network", "run `datathon up` (it sets passwords and pg_hba back), then "
                                               "`datathon status`"),
    "db.login.without_tls": ("the server accepts logins without TLS", "run `datathon up`: it rewrites pg_hba.conf "
                             "(hostssl only); on an external server, require TLS there"),
    "db.login.wrong_password": ("the server lets a wrong password in (a trust line in pg_hba.conf?)",
                                "run `datathon up` (it rewrites pg_hba.conf); on an external server, fix its "
                                "pg_hba.conf"),
    "db.login.other_database": ("the team can log in to a database outside the event",
                                "run `datathon up`; on an external server, revoke CONNECT from PUBLIC there"),
    "db.search_path": ("the login's search_path was changed (ALTER ROLE ... SET search_path)",
                       "run `datathon up`: it puts the policy back"),
    "db.policy": ("a limit was changed on the server (a team may set its own in one database)",
                  "run `datathon up`: it puts every login's settings back"),
    "db.statement_timeout": ("statement_timeout is off or changed for this login", "run `datathon up`"),
    "db.temp_tables": ("TEMP privilege differs from policy.temp_tables", "run `datathon up`"),
    "db.shared.read": ("a shared table was loaded after the grants, or by another owner",
                       "run `datathon up` (it grants SELECT on every shared table)"),
    "db.own": ("the team's schema is missing or not owned by the team", "run `datathon up`"),
    "db.shared": ("someone granted more than SELECT on shared data", "run `datathon up`; find who granted it in "
                                                                     "the server log"),
    "db.other_team": ("a grant reaches another team's schema", "run `datathon up`: it revokes what the plan "
                                                               "does not give"),
    "db.public": ("CREATE on schema public is granted", "run `datathon up`"),
    "db.create": ("the login has CREATEDB/CREATEROLE or CREATE on the database", "run `datathon up`"),
    "db.set_role": ("the login is a member of another role", "run `datathon up`: memberships are reset"),
    "db.memberships": ("the login is a member of another role", "run `datathon up`"),
    "db.pg_authid": ("the login is a superuser or reads pg_authid", "run `datathon up`; check who altered the role"),
    "db.server_files": ("the login has pg_read_server_files or similar", "run `datathon up`"),
    "db.copy_program": ("the login has pg_execute_server_program or similar", "run `datathon up`"),
    "db.disk_quota": ("the team's schema grew past policy.disk_quota", "ask the team to drop what it no longer "
                                                                       "needs, or raise the quota"),
    "db.connection_limit": ("the login's connection limit is off", "run `datathon up`"),
    "mentor": ("a mentor's per-team login is missing, has another password, or can write",
               "run `datathon up`, then hand out the mentor's sheet again"),
    "ws.login": ("the hub is down, or the Unix password differs from the handout", "run `datathon up`, then "
                                                                                   "`datathon status`"),
    "ws.python": ("the team's server has no database settings or an old environment",
                  "run `datathon up`, then `datathon restart TEAM`"),
    "ws.r": ("R's drivers are missing, or the server has no database settings",
             "run `datathon up` (it checks R's drivers), then `datathon restart TEAM`"),
    "ws.datasets": ("~/datasets is missing, or the store's permissions were changed", "run `datathon up`"),
    "ws.other": ("a home, TMPDIR or server is open to other teams", "run `datathon up`: it makes them private "
                                                                    "again"),
    "ws.hub.ports": ("another program holds one of the hub's ports", "stop it (`datathon plan` names it), then "
                                                                     "`datathon up`"),
    "ws.account": ("the Unix user is not the one datathon made", "run `datathon up`; see `datathon status`"),
    "ws.sandbox": ("the team's server started before its limits were set", "`datathon restart TEAM`"),
    "ws.culler": ("the hub or its idle culler runs an older or changed configuration",
                  "run `datathon up` (it rewrites the configuration and restarts the hub alone)"),
}


@dataclass
class Problem:
    """One failing probe, with every team it failed for."""

    probe: str
    description: str
    cause: str
    fix: str
    teams: list[str] = field(default_factory=list)
    detail: str = ""  # the first failure's detail
    evidence: str = ""  # its last statement and result


def advice_for(probe: str) -> tuple[str, str]:
    key = max((k for k in ADVICE if probe.startswith(k)),
              key=len, default=None)
    return ADVICE[key] if key else ("see the evidence below", "fix the cause, then run `datathon check` again")


def problems(failures: list[ProbeResult]) -> list[Problem]:
    out: dict[str, Problem] = {}
    for r in failures:
        if r.probe not in out:
            cause, fix = advice_for(r.probe)
            last = r.evidence[-1] if r.evidence else None
            out[r.probe] = Problem(r.probe, r.description, cause, fix, detail=r.detail,
                                   evidence=f"{last.statement}\n-> {last.result}" if last else "")
        out[r.probe].teams.append(r.subject)
    return list(out.values())
