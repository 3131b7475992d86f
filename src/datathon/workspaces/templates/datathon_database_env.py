# Written by datathon into the team environment; datathon-database-env.pth runs it when any Python process of
# the environment starts.
# A team's process started outside the hub (runuser, cron, ssh without a login shell, nbconvert) has no PG*
# variables; libpq then falls back to a local socket and fails. This fills in the ones it lacks from the
# team's own ~/.config/datathon/database.env (no secret in it: passwords stay in ~/.pgpass).
# Only for a team's own uid and home as the password database has them: never for root, never from $HOME.
def _datathon_database_env():
    import os
    import pwd

    if os.getuid() == 0:
        return
    try:
        home = pwd.getpwuid(os.getuid()).pw_dir
        with open(os.path.join(home, ".config", "datathon", "database.env"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, KeyError, UnicodeDecodeError):
        return
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.startswith("PG") and key.isupper() and not key.startswith("#"):
            os.environ.setdefault(key, value)


_datathon_database_env()
del _datathon_database_env
