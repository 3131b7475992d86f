# Written by datathon into the team environment: a team's server as the hub starts it when the event file says
# `workspaces.light_start: true` (the default). It is jupyterhub-singleuser with one import kept out: the
# `rfc3987_syntax` module, which jsonschema imports for its optional "iri" format check, compiles a full RFC 3987
# grammar with Lark at import time, about 1.4 s of CPU in every server start (half the start) for a check no
# part of JupyterLab uses. Only this process goes without it: kernels and terminals start their own Python.
# The rest of the lighter start is on the spawner's command line (the hub's configuration).
import sys

sys.modules.setdefault("rfc3987_syntax", None)  # None: `import rfc3987_syntax` fails, as when it is not installed

from jupyterhub.singleuser import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "jupyterhub-singleuser"  # its name in `ps` (and the name datathon looks for in /proc)
    sys.exit(main())
