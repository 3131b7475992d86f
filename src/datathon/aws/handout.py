"""What a team's handout says about its machine: the address, the SSH command with its key file, JupyterLab
through an SSH port-forward (nothing but SSH is open), the same through SSM where no port is open at all, the
database through the same tunnel, and pgAdmin's servers.json with the SSH tunnel set. Pure functions."""

from __future__ import annotations

import json
from dataclasses import dataclass

from datathon.core.handout import Item, Section, Snippet


@dataclass(frozen=True)
class Access:
    team: str
    login: str  # the team's database login
    instance: str
    address: str | None  # public address (None: none yet, or SSM only)
    key_file: str  # the file name beside the handout
    ssh_user: str
    region: str
    db_host: str | None = None
    db_port: int = 5432
    databases: tuple[str, ...] = ()
    sslmode: str = "require"

    @property
    def ssh(self) -> str:
        return f"ssh -i {self.key_file} {self.ssh_user}@{self.address}"

    def tunnel(self) -> str:
        forwards = "-L 8888:localhost:8888"
        if self.db_host:
            forwards += f" -L 15432:{self.db_host}:{self.db_port}"
        return f"ssh -i {self.key_file} -N {forwards} {self.ssh_user}@{self.address}"

    def ssm(self) -> list[str]:
        base = f"aws ssm start-session --region {self.region} --target {self.instance}"
        out = [f"{base} --document-name AWS-StartPortForwardingSession "
               "--parameters '{\"portNumber\":[\"8888\"],\"localPortNumber\":[\"8888\"]}'"]
        if self.db_host:
            out.append(f"{base} --document-name AWS-StartPortForwardingSessionToRemoteHost --parameters "
                       f"'{{\"host\":[\"{self.db_host}\"],\"portNumber\":[\"{self.db_port}\"],"
                       "\"localPortNumber\":[\"15432\"]}'")
        return out


def machine_section(a: Access) -> Section:
    items = [Item("Machine", a.instance), Item("Address", a.address or "not yet known: run `datathon handouts` "
                                                                      "once it runs"),
             Item("SSH key", f"{a.key_file} (beside this sheet; keep it private: chmod 600 {a.key_file})")]
    snippets = [Snippet("Log in", "shell", f"chmod 600 {a.key_file}\n{a.ssh}"),
                Snippet("JupyterLab (and the database) through SSH: leave this running, then open "
                        "http://localhost:8888", "shell", a.tunnel()),
                Snippet("The same without SSH, through AWS Systems Manager (needs the AWS CLI and its "
                        "session-manager-plugin)", "shell", "\n".join(a.ssm()))]
    if a.db_host:
        db = a.databases[0] if a.databases else "postgres"
        snippets.append(Snippet("The database through the tunnel (from your laptop)", "shell",
                                f"psql \"host=localhost port=15432 dbname={db} user={a.login} sslmode={a.sslmode}\""))
    return Section("machine", "Your machine", intro="Your team's own machine on AWS: JupyterLab runs on it and "
                   "listens only on the machine itself; reach it through the SSH tunnel below. /scratch (where the "
                   "machine has a local NVMe disk) is erased whenever the machine stops.", items=items,
                   snippets=snippets, order=5)


def pgadmin_tunnel_servers(a: Access) -> dict:
    """pgAdmin 4 servers.json: the event's databases through an SSH tunnel to the team's machine."""
    servers = {}
    for n, db in enumerate(a.databases or ("postgres",), start=1):
        servers[str(n)] = {
            "Name": f"{db} (via {a.team}'s machine)", "Group": "datathon", "Host": a.db_host, "Port": a.db_port,
            "MaintenanceDB": db, "Username": a.login, "SSLMode": a.sslmode, "UseSSHTunnel": 1,
            "TunnelHost": a.address or "", "TunnelPort": "22", "TunnelUsername": a.ssh_user,
            "TunnelAuthentication": 1, "TunnelIdentityFile": a.key_file,
        }
    return {"Servers": servers}


def pgadmin_json(a: Access) -> str:
    return json.dumps(pgadmin_tunnel_servers(a), indent=2) + "\n"
