"""Team workspaces on one server: JupyterHub, a Unix user per team, one shared Python/R environment."""
