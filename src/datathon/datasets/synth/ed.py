"""Synthetic MIMIC-IV-ED: ED stays of the same subject ids as the synthetic MIMIC-IV (10000000 + i)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from datathon.datasets.catalogue import DATASETS
from datathon.datasets.synth.engine import NULL, Ctx, Rng, TableGen, Writer, csv_text, emit, ts

DS = DATASETS["mimic-iv-ed"]
T = {t.name: t for t in DS.tables}
COMPLAINTS = ["Chest pain", "Abd pain, Nausea", "Dyspnea", "s/p Fall", "Headache", 'Fever, "not feeling well"',
              "Altered mental status\nper EMS", "Dolor abdominal", "Lightheaded"]


def generate(out: Path, *, patients: int, seed: int) -> Writer:
    rng = Rng(seed)
    ctx = Ctx(rng)
    tables = list(DS.tables)
    w = Writer(out, tables)
    key = {"subject_id": lambda c: str(c.row["subject"]), "stay_id": lambda c: str(c.row["stay"]),
           "charttime": lambda c: ts(c.row["time"] + dt.timedelta(minutes=c.rng.randint(0, 400)))}
    gens = {
        "diagnosis": (2.1, TableGen(T["diagnosis"], "stay", 2.1, common=key, values={"seq_num": lambda c: str(c.next_id(
            f"dx{c.row['stay']}")), "icd_version": lambda c: "10", "icd_code": lambda c: c.rng.choice(
            ["R079", "R109", "J189", "I10", "E119"]), "icd_title": lambda c: c.rng.words(4, quirks=0.1)})),
        "medrecon": (7.0, TableGen(T["medrecon"], "stay", 7, common=key)),
        "pyxis": (3.7, TableGen(T["pyxis"], "stay", 3.7, common=key)),
        "vitalsign": (3.7, TableGen(T["vitalsign"], "stay", 3.7, common=key, values={
            # every 15 minutes: (stay_id, charttime) is the official primary key
            "charttime": lambda c: ts(c.row["time"] + dt.timedelta(minutes=15 * c.next_id(f"vs{c.row['stay']}"))),
            "heartrate": lambda c: str(int(c.rng.gauss(88, 15))), "sbp": lambda c: str(int(c.rng.gauss(130,
            20))), "dbp": lambda c: str(int(c.rng.gauss(75, 12))), "o2sat": lambda c: str(min(100, int(c.rng.gauss(
                97, 2)))), "temperature": lambda c: f"{c.rng.gauss(98.2, 0.9):.1f}", "resprate": lambda c: "18"})),
    }
    for i in range(patients):
        subject = 10000000 + i
        for _ in range(rng.count(1.2)):
            stay = ctx.next_id("edstay", 30000000)
            intime = dt.datetime(rng.randint(2110, 2200), rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23))
            ctx.row = {"subject": subject, "stay": stay, "time": intime}
            w.add("edstays", [str(subject), rng.maybe(0.4, str(20000000 + i)), str(stay), ts(intime),
                              ts(intime + dt.timedelta(hours=rng.randint(2, 20))), rng.choice("MF"),
                              "WHITE", rng.choice(["WALK IN", "AMBULANCE", "UNKNOWN"]),
                              rng.choice(["HOME", "ADMITTED", "TRANSFER"])])
            w.add("triage", [str(subject), str(stay), f"{rng.gauss(98.1, 1):.1f}", str(int(rng.gauss(90, 15))),
                             "18", "98", str(int(rng.gauss(135, 20))), str(int(rng.gauss(78, 12))),
                             rng.choice(["0", "5", "10", "unable"]), str(rng.randint(1, 5)),
                             csv_text(rng.choice(COMPLAINTS)) if rng.random() < 0.95 else NULL])
            for rate, gen in gens.values():
                emit(gen, ctx, w, rng.count(rate))
    w.close(tables)
    return w
