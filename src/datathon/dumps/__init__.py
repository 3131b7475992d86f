"""The organizer's own pg_dump output, restored as it is: plain SQL dumps (also .sql.gz / .sql.zst) and archives
(custom, directory, tar), whatever roles and server they come from."""
