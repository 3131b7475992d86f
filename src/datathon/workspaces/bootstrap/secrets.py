"""The team's secrets reach its machine after boot, over SSH with the team's key, never in user data (which any
process on the machine can read from the instance metadata, as can anyone allowed ec2:DescribeInstanceAttribute)."""

from __future__ import annotations

from datathon.core import clientfiles, ssh
from datathon.core.endpoint import Endpoint


def deliver_pgpass(target: ssh.SshTarget, endpoint: Endpoint, role: str, password: str) -> bool:
    """~/.pgpass (0600) on the machine, written as the team itself. True when it changed."""
    data = clientfiles.pgpass(endpoint, [(role, password)])
    current = ssh.run(target, "cd && cat .pgpass 2>/dev/null", timeout=60).stdout
    if current == data:
        return False
    ssh.put_file(target, ".pgpass", data, 0o600)
    return True
