"""A loaded MIMIC-IV + MIMIC-IV-ED database has exactly the official builds' keys and indexes, read back from the
server's catalog and compared with the reference lists (tests/data/official-keys-indexes.md, a copy of the facts
read from mimic-code's constraint.sql and index.sql); datathon's own extras only with `extra_keys: true`."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import psycopg
import pytest
import yaml

from conftest import Event, event_data, free_port
from datathon.commands.up import run_up
from datathon.config import load_config
from datathon.datasets.catalogue import DATASETS
from datathon.datasets.load import load_dataset
from datathon.datasets.synth import synthesize
from datathon.errors import ConfigError

REFERENCE = Path(__file__).parent / "data" / "official-keys-indexes.md"
SCHEMAS = ["mimiciv_hosp", "mimiciv_icu", "mimiciv_ed"]

# datathon's additions beyond the official builds (README, "Clinical datasets"): asked for, they are all there
EXTRAS = {
    *(("foreign key", f"mimiciv_{m}.{t}", (c,), f"mimiciv_{r}", (rc,)) for m, t, c, r, rc in [
        ("hosp", "omr", "subject_id", "hosp.patients", "subject_id"),
        ("hosp", "labevents", "hadm_id", "hosp.admissions", "hadm_id"),
        ("hosp", "transfers", "hadm_id", "hosp.admissions", "hadm_id"),
        ("icu", "ingredientevents", "subject_id", "hosp.patients", "subject_id"),
        ("icu", "ingredientevents", "hadm_id", "hosp.admissions", "hadm_id"),
        ("icu", "ingredientevents", "stay_id", "icu.icustays", "stay_id"),
        ("icu", "ingredientevents", "itemid", "icu.d_items", "itemid")]),
    ("index", "mimiciv_hosp.emar_detail", ("emar_id",)),
    ("index", "mimiciv_ed.edstays", ("subject_id",)),
    ("index", "mimiciv_ed.medrecon", ("stay_id",)),
    ("index", "mimiciv_ed.pyxis", ("stay_id",)),
    ("index", "mimiciv_ed.vitalsign", ("stay_id",)),
}


def cols(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(","))


def reference() -> set[tuple]:
    """Every `- primary key|foreign key|index schema.table (columns) [-> schema.table (columns)]` line."""
    out = set()
    for line in REFERENCE.read_text().splitlines():
        if m := re.fullmatch(r"- (primary key|index) (\S+) \((.*)\)", line):
            out.add((m[1], m[2], cols(m[3])))
        elif m := re.fullmatch(r"- foreign key (\S+) \((.*)\) -> (\S+) \((.*)\)", line):
            out.add(("foreign key", m[1], cols(m[2]), m[3], cols(m[4])))
    return out


def loaded(conn) -> tuple[set[tuple], dict[tuple, str], set[bool]]:
    """The keys and indexes in the database (as reference() writes them), their names, and whether every
    foreign key is validated."""
    found, names, valid = set(), {}, set()
    attnames = ("(SELECT array_agg(a.attname ORDER BY k.n) FROM unnest({keys}) WITH ORDINALITY k(num, n)"
                " JOIN pg_attribute a ON a.attrelid = {rel} AND a.attnum = k.num)")
    for kind, table, key, ref, ref_key, name, ok in conn.execute(
            "SELECT c.contype, c.conrelid::regclass::text, " + attnames.format(keys="c.conkey", rel="c.conrelid")
            + ", c.confrelid::regclass::text, " + attnames.format(keys="c.confkey", rel="c.confrelid")
            + ", c.conname, c.convalidated FROM pg_constraint c WHERE c.connamespace::regnamespace::text = ANY(%s)"
            " AND c.contype IN ('p', 'f')", (SCHEMAS,)):
        item = ("primary key", table, tuple(key)) if kind == "p" else ("foreign key", table, tuple(key), ref,
                                                                        tuple(ref_key))
        found.add(item)
        names[item] = name
        if kind == "f":
            valid.add(ok)
    for table, key, name in conn.execute(
            "SELECT i.indrelid::regclass::text, " + attnames.format(keys="i.indkey::int2[]", rel="i.indrelid")
            + ", i.indexrelid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid"
            " WHERE c.relnamespace::regnamespace::text = ANY(%s) AND NOT i.indisprimary", (SCHEMAS,)):
        found.add(("index", table, tuple(key)))
        names[("index", table, tuple(key))] = name.split(".")[-1]
    return found, names, valid


@pytest.fixture(scope="module")
def k13_event(tmp_path_factory):
    """One managed cluster, two databases loaded from the same synthetic MIMIC-IV + ED: official keys only
    (the default) and with datathon's extras."""
    root = tmp_path_factory.mktemp("k13")
    for kind in ("mimic-iv", "mimic-iv-ed"):
        synthesize(kind, root / kind, patients=20, seed=13)
    data = event_data(event="k13keys", port=free_port(), teams=[{"name": "alpha"}])
    data["databases"] = [
        {"name": f"k13{variant}", "shared_schemas": [], "sources": [
            {"dataset": kind, "path": str(root / kind), **({"extra_keys": True} if variant == "extra" else {})}
            for kind in ("mimic-iv", "mimic-iv-ed")]}
        for variant in ("official", "extra")]
    ev = Event(root, yaml.safe_dump(data, sort_keys=False))
    try:
        run_up(ev.ctx, yes=True)
        yield ev
    finally:
        ev.close()


def test_the_reference_lists_are_complete():
    ref = reference()
    count = {k: sum(1 for r in ref if r[0] == k and r[1].split(".")[0] != "mimiciv_ed") for k in
             ("primary key", "foreign key", "index")}
    assert count == {"primary key": 24, "foreign key": 51, "index": 43}  # the reference's own headline counts
    assert len([r for r in ref if r[1].startswith("mimiciv_ed.")]) == 4 + 5 + 9


def test_a_default_load_has_exactly_the_official_keys_and_indexes(k13_event):
    with k13_event.server.connect("k13official", autocommit=True) as conn:
        found, names, valid = loaded(conn)
    ref = reference()
    assert sorted(ref - found) == []  # none missing
    assert sorted(found - ref) == []  # none added
    assert valid == {True}  # consistent synthetic data: every key validated
    # the official builds' names: <table>_pk, <table>_<referenced table>_fk, <table>_idxNN (and index.sql's four
    # exceptions), so scripts written against the official database find them
    for item, name in names.items():
        table = item[1].split(".")[1]
        if item[0] == "primary key":
            assert name == f"{table}_pk"
        elif item[0] == "foreign key":
            assert name == f"{table}_{item[3].split('.')[1]}_fk"
        else:
            assert re.fullmatch(rf"{table}_idx0\d", name) or name in {
                "d_icd_diag_idx02", "d_icd_proc_idx02", "emar_det_idx04", "hcpcsevents_idx04"}, name
    assert names[("index", "mimiciv_ed.pyxis", ("gsn",))] == "pyxis_idx02"
    assert names[("index", "mimiciv_hosp.microbiologyevents", ("micro_specimen_id",))] == "microbiologyevents_idx03"


def test_extras_only_when_asked_for(k13_event):
    with k13_event.server.connect("k13extra", autocommit=True) as conn:
        found, names, valid = loaded(conn)
    assert sorted(found - reference()) == sorted(EXTRAS)
    assert reference() <= found and valid == {True}
    assert names[("index", "mimiciv_hosp.emar_detail", ("emar_id",))] == "emar_detail_emar_id_idx"
    assert run_up(k13_event.ctx, yes=True).applied == 0  # nothing left to do


def test_extra_keys_is_validated_with_a_clear_message(tmp_path):
    (tmp_path / "ed").mkdir()
    (tmp_path / "datathon.yaml").write_text(
        "event: k13cfg\nteams: {count: 1}\ndatabases:\n  - name: k13cfgdb\n    sources:\n"
        f"      - {{dataset: mimic-iv-ed, path: {tmp_path}, extra_keys: sometimes}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "datathon.yaml")
    text = "\n".join(err.value.problems)
    assert "datathon.yaml:6: databases.0.sources.0.extra_keys" in text, text
    assert "must be true or false, not 'sometimes'" in text and "beyond the dataset's official build" in text


def test_a_tables_keys_checked_in_one_scan_catch_each_violation(tmp_path, make_event):
    """chartevents' four keys are checked together (fkscan): two violated by one row stay NOT VALID, are
    reported and still guard new rows; the other two are validated."""
    folder = tmp_path / "mimic"
    synthesize("mimic-iv", folder, patients=8, seed=13)
    (folder / "SHA256SUMS.txt").unlink()
    path = folder / "icu" / "chartevents.csv.gz"
    lines = gzip.open(path).read().decode().split("\n")
    orphan = lines[1].split(",")
    orphan[2], orphan[6] = "39999999", "1"  # an ICU stay and an item that do not exist
    path.write_bytes(gzip.compress("\n".join([*lines[:-1], ",".join(orphan), ""]).encode()))
    ev = make_event(event="k13scan", teams=[{"name": "alpha"}])
    ev.up()
    report = load_dataset(ev.server, "k13scandb", "k13scan_data", DATASETS["mimic-iv"], folder, ev.ctx.console,
                          tables=["patients", "admissions", "icustays", "d_items", "chartevents"])
    with ev.server.connect("k13scandb", autocommit=True) as c:
        state = dict(c.execute("SELECT conname, convalidated FROM pg_constraint"
                               " WHERE conrelid = 'mimiciv_icu.chartevents'::regclass").fetchall())
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # NOT VALID still checks new rows
            c.execute("INSERT INTO mimiciv_icu.chartevents SELECT * FROM mimiciv_icu.chartevents"
                      " WHERE stay_id = 39999999")
    assert state == {"chartevents_patients_fk": True, "chartevents_admissions_fk": True,
                     "chartevents_icustays_fk": False, "chartevents_d_items_fk": False}
    assert sorted(report.fk_problems) == [
        "mimiciv_icu.chartevents(itemid) -> d_items: 1 row(s) refer to missing keys, e.g. 1; "
        "key chartevents_d_items_fk kept NOT VALID",
        "mimiciv_icu.chartevents(stay_id) -> icustays: 1 row(s) refer to missing keys, e.g. 39999999; "
        "key chartevents_icustays_fk kept NOT VALID"]


def test_keys_and_indexes_of_an_older_load_are_not_built_twice(k13_event):
    """A database loaded before the official names (datathon's old <table>_<columns>_idx and _fkey names): the
    keys phase of a new run finds them by their columns and builds nothing twice."""
    with k13_event.server.connect("k13official", autocommit=True) as c:
        c.execute("ALTER INDEX mimiciv_ed.pyxis_idx02 RENAME TO pyxis_gsn_idx")
        c.execute("ALTER TABLE mimiciv_ed.pyxis RENAME CONSTRAINT pyxis_edstays_fk TO pyxis_stay_id_fkey")
        before = loaded(c), counts(c)
    ed = next(s for s in k13_event.ctx.config.databases[0].sources if s.dataset == "mimic-iv-ed")
    report = load_dataset(k13_event.server, "k13official", "k13keys_data", DATASETS["mimic-iv-ed"], ed.path,
                          k13_event.ctx.console)
    assert all(t.skipped for t in report.tables) and not report.fk_problems
    with k13_event.server.connect("k13official", autocommit=True) as c:
        after = loaded(c), counts(c)
    assert after == before and after[1] == (4 + 9, 5)  # nothing added: 13 indexes (4 of them keys), 5 keys
    assert after[0][0] == reference()
    assert after[0][1][("index", "mimiciv_ed.pyxis", ("gsn",))] == "pyxis_gsn_idx"


def counts(conn) -> tuple[int, int]:
    """Indexes and foreign keys in mimiciv_ed (a duplicate would not show in loaded()'s sets)."""
    return conn.execute("SELECT (SELECT count(*) FROM pg_indexes WHERE schemaname = 'mimiciv_ed'),"
                        " (SELECT count(*) FROM pg_constraint WHERE contype = 'f'"
                        "  AND connamespace = 'mimiciv_ed'::regnamespace)").fetchone()


def test_a_source_loaded_before_extra_keys_existed_keeps_its_identity(tmp_path):
    """Every dataset source loaded by an earlier datathon was recorded with a digest of its options; the new option
    at its default must not change it (else `up` would refuse every loaded dataset as changed)."""
    import hashlib
    import json

    from datathon.config.models import DatasetSource
    from datathon.database.sources import source_identity

    folder = tmp_path / "mimic-iv"
    folder.mkdir()
    src = DatasetSource.model_validate({"dataset": "mimic-iv", "path": str(folder)},
                                       context={"base_dir": tmp_path})
    before = src.model_dump(mode="json")
    before.pop("extra_keys")  # what an older datathon hashed
    old = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()
    assert source_identity(src, tmp_path)[1] == old
    opted = src.model_copy(update={"extra_keys": True})
    assert source_identity(opted, tmp_path)[1] != old
