"""All the foreign keys of one table checked in one scan of it, where PostgreSQL's VALIDATE CONSTRAINT scans the
table once per key (MIMIC-IV's chartevents: four times).

The keys are added NOT VALID first (which waits for every writer of the table to finish), so from then on the
server itself checks every new or changed row, and every delete from a referenced table; what remains is the
rows already there. One query counts, for each key, the rows whose value is not among the referenced table's
keys (NULL passes, as MATCH SIMPLE says). A key with none is then marked validated in pg_constraint, as VALIDATE
does after its own check; that needs a superuser (the managed cluster), so elsewhere VALIDATE does the work.
The query only reads: unlike VALIDATE (whose lock waits for CREATE INDEX), it runs beside the table's index
builds, so on the critical path the biggest table's index and its key check take a core each. A key with
violations stays NOT VALID and is reported, as before. Only single-column keys into a primary key (all the
catalogue has); anything else goes through VALIDATE."""

from __future__ import annotations

import psycopg
from psycopg import sql

from datathon.datasets.catalogue import Dataset, ForeignKey, Table

I = sql.Identifier  # noqa: E741


def _qualified(t: Table) -> sql.Composable:
    return sql.SQL("{}.{}").format(I(t.schema), I(t.name))


def usable(conn: psycopg.Connection, dataset: Dataset, fks: list[ForeignKey]) -> bool:
    """Worth it (two keys or more, each one column into its table's primary key) and allowed (a superuser)."""
    return (len(fks) > 1 and conn.info.parameter_status("is_superuser") == "on"
            and all(len(fk.columns) == 1 and dataset.table(fk.ref_table).primary_key == fk.ref_columns
                    for fk in fks))


def check_and_mark(conn: psycopg.Connection, dataset: Dataset, t: Table, fks: list[ForeignKey], *,
                   parallel: bool = False) -> dict[str, int]:
    """Count each key's violating rows in one scan of t; mark the keys with none validated. Returns the counts
    by key name. The keys must exist (NOT VALID); conn must be a superuser's, outside a transaction. Unlike
    VALIDATE (one process), the query may use parallel workers: on the critical path (the biggest table) they
    shorten the end of the load."""
    # one LEFT JOIN per key (the referenced side is unique: no row is repeated), each counted where it found
    # nothing; the planner joins each as VALIDATE's anti-join would (hash, or merge for a big referenced table)
    joins, counts = [], []
    for i, fk in enumerate(fks):
        alias, col, ref_col = I(f"r{i}"), I(fk.columns[0]), I(fk.ref_columns[0])
        joins.append(sql.SQL("LEFT JOIN ONLY {} {} ON {}.{} = x.{}").format(
            _qualified(dataset.table(fk.ref_table)), alias, alias, ref_col, col))
        counts.append(sql.SQL("count(*) FILTER (WHERE x.{} IS NOT NULL AND {}.{} IS NULL)").format(col, alias, ref_col))
    names = [t.fk_name(fk) for fk in fks]
    with conn.transaction():
        # the memory VALIDATE's query gets (it runs with work_mem = maintenance_work_mem)
        conn.execute("SELECT set_config('work_mem', current_setting('maintenance_work_mem'), true)")
        if not parallel:  # off the critical path, workers would only compete with the other loads
            conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        found = conn.execute(sql.SQL("SELECT {} FROM ONLY {} x {}").format(
            sql.SQL(", ").join(counts), _qualified(t), sql.SQL(" ").join(joins))).fetchone()
        result = dict(zip(names, found, strict=True))
        clean = [name for name, n in result.items() if n == 0]
        if clean:
            conn.execute("UPDATE pg_catalog.pg_constraint SET convalidated = true"
                         " WHERE conrelid = %s::regclass AND contype = 'f' AND conname = ANY(%s)",
                         (f"{I(t.schema).as_string(conn)}.{I(t.name).as_string(conn)}", clean))
    return result
