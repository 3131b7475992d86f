"""Synthetic eICU-CRD: camelCase files at the root, one patient unit stay as the unit of everything."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from datathon.datasets.catalogue import DATASETS
from datathon.datasets.synth.engine import NULL, Ctx, Rng, TableGen, Writer, csv_text, emit

DS = DATASETS["eicu"]
T = {t.name: t for t in DS.tables}

# rows per unit stay, from the official counts / 200,859 stays
RATES = {"vitalperiodic": 730, "nursecharting": 755, "lab": 195, "respiratorycharting": 100, "nurseassessment": 78,
         "intakeoutput": 60, "physicalexam": 46, "nursecare": 41, "vitalaperiodic": 125, "medication": 36,
         "infusiondrug": 24, "careplangeneral": 15.5, "diagnosis": 13.5, "note": 11, "treatment": 18,
         "pasthistory": 5.7, "admissiondrug": 4.4, "admissiondx": 3.1, "careplancareprovider": 2.5,
         "careplangoal": 2.5, "apachepatientresult": 1.5, "allergy": 1.25, "respiratorycare": 4.3,
         "apacheapsvar": 0.85, "apachepredvar": 0.85, "microlab": 0.085, "careplaninfectiousdisease": 0.04,
         "customlab": 0.005, "careplaneol": 0.007}
LABS = [("creatinine", "mg/dL", 0.4, 4.0), ("potassium", "mmol/L", 2.8, 6.2), ("sodium", "mmol/L", 125, 150),
        ("Hgb", "g/dL", 6.5, 17), ("WBC x 1000", "K/mcL", 2, 25), ("glucose", "mg/dL", 60, 350),
        ("lactate", "mmol/L", 0.5, 8)]


def _offset(c: Ctx) -> str:
    return str(c.rng.randint(-60, c.row["span"]))


def _vitals(c: Ctx) -> dict:
    r = c.rng
    return {"heartrate": str(int(r.gauss(88, 18))), "sao2": str(min(100, int(r.gauss(96, 3)))),
            "respiration": str(int(r.gauss(19, 5))), "temperature": f"{r.gauss(37, 0.6):.1f}"}


def generate(out: Path, *, patients: int, seed: int) -> Writer:
    rng = Rng(seed)
    ctx = Ctx(rng)
    tables = list(DS.tables)
    w = Writer(out, tables)
    for h in range(208):
        w.add("hospital", [str(h + 1), rng.choice(["<100", "100 - 249", "250 - 499", ">= 500"]),
                           rng.choice(["true", "false"]), rng.choice(["Midwest", "South", "West", "Northeast", NULL])])
    gens = {}
    for name in RATES:
        table = T[name]
        values = {"patientunitstayid": lambda c: str(c.row["stay"])}
        for col in table.columns:
            if col.name.endswith("offset"):
                values[col.name] = _offset
        if pk := table.primary_key or table.extra_primary_key:  # unique ids, whichever keys a load builds
            key = pk[0]
            values[key] = (lambda k: lambda c: str(c.next_id(k)))(key)
        if name == "nursecharting":
            values["nursingchartid"] = lambda c: str(c.next_id("nursingchartid"))
        if name == "note":
            values["notetext"] = lambda c: c.rng.words(12, quirks=0.3)
        if name == "diagnosis":
            values["diagnosisstring"] = lambda c: csv_text(c.rng.choice([
                "cardiovascular|shock|sepsis", "pulmonary|respiratory failure|acute respiratory failure",
                "renal|disorder of kidney|acute renal failure", "neurologic|altered mental status"]))
            values["icd9code"] = lambda c: csv_text(c.rng.choice(["038.9, A41.9", "518.81, J96.00", "584.9, N17.9"]))
            values["diagnosispriority"] = lambda c: c.rng.choice(["Primary", "Major", "Other"])
        gens[name] = TableGen(table, "stay", RATES[name], values)
    lab_cols = [c.name for c in T["lab"].columns]
    vp_cols = [c.name for c in T["vitalperiodic"].columns]
    for i in range(patients):
        stay = 141000 + i
        span = rng.randint(600, 60 * 24 * 6)
        ctx.row = {"stay": stay, "span": span, "time": dt.datetime(2014, 1, 1)}
        age = min(95, max(16, int(rng.gauss(63, 17))))
        w.add("patient", [str(stay), str(128000 + i), rng.choice(["Male", "Female"]),
                          "> 89" if age > 89 else str(age), rng.choice(["Caucasian", "African American", "Hispanic",
                                                                         "Asian", NULL]),
                          str(rng.randint(1, 208)), str(rng.randint(1, 1000)), rng.words(3, 1000, quirks=0.05),
                          f"{rng.gauss(170, 10):.2f}", "10:00:00", str(-rng.randint(0, 2000)),
                          "Emergency Department", "2014", "12:00:00", str(span + rng.randint(0, 3000)), "Home",
                          rng.choice(["Alive", "Expired"]), rng.choice(["Med-Surg ICU", "MICU", "CCU-CTICU"]),
                          "11:00:00", "Emergency Department", "1", "admit", f"{rng.gauss(80, 18):.2f}",
                          f"{rng.gauss(79, 18):.2f}", "14:00:00", str(span), "Floor", "Alive",
                          f"{rng.randint(0, 999):03d}-{rng.randint(0, 99999):05d}"])
        for name, gen in gens.items():
            n = rng.count(gen.rate)
            if name == "lab":
                for _ in range(n):
                    vals = [f(ctx) for f in gen.fns]
                    lab, uom, lo, hi = rng.choice(LABS)
                    v = rng.uniform(lo, hi)
                    vals[lab_cols.index("labname")] = lab
                    vals[lab_cols.index("labresult")] = f"{v:.4f}"
                    vals[lab_cols.index("labresulttext")] = f"{v:.2f}"
                    vals[lab_cols.index("labtypeid")] = str(rng.randint(1, 7))
                    vals[lab_cols.index("labmeasurenamesystem")] = uom
                    w.add(name, vals)
            elif name == "vitalperiodic":
                for k in range(n):
                    vals = [f(ctx) for f in gen.fns]
                    vals[vp_cols.index("observationoffset")] = str(k * 5)
                    for col, v in _vitals(ctx).items():
                        vals[vp_cols.index(col)] = v
                    w.add(name, vals)
            else:
                emit(gen, ctx, w, n)
    w.close(tables)
    return w
