"""`python -m datathon`: the same as the `datathon` command (the dashboard's process is started this way)."""

from datathon.cli import main

main()
