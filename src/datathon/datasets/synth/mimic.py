"""Synthetic MIMIC-IV (hosp + icu) in the official layout and proportions (per patient, as in v3.1)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from datathon.datasets.catalogue import DATASETS
from datathon.datasets.synth.engine import EMPTY, NULL, Ctx, Rng, TableGen, Writer, csv_text, ts

DS = DATASETS["mimic-iv"]
T = {t.name: t for t in DS.tables}

LABS = [  # itemid, label, fluid, category, uom, low, high
    (50912, "Creatinine", "Blood", "Chemistry", "mg/dL", 0.4, 4.0), (50971, "Potassium", "Blood", "Chemistry", "mEq/L",
     2.8, 6.2), (50983, "Sodium", "Blood", "Chemistry", "mEq/L", 125, 150), (51222, "Hemoglobin", "Blood",
     "Hematology", "g/dL", 6.5, 17.0), (51301, "White Blood Cells", "Blood", "Hematology", "K/uL", 2.0, 25.0),
    (50931, "Glucose", "Blood", "Chemistry", "mg/dL", 60, 350), (50813, "Lactate", "Blood", "Blood Gas", "mmol/L",
     0.5, 8.0), (51265, "Platelet Count", "Blood", "Hematology", "K/uL", 40, 500)]
VITALS = [  # itemid, label, abbreviation, uom, low, high
    (220045, "Heart Rate", "HR", "bpm", 50, 140), (220179, "Non Invasive Blood Pressure systolic", "NBPs", "mmHg",
     80, 180), (220180, "Non Invasive Blood Pressure diastolic", "NBPd", "mmHg", 40, 100), (220210,
     "Respiratory Rate", "RR", "insp/min", 10, 35), (220277, "O2 saturation pulseoxymetry", "SpO2", "%", 85, 100),
    (223761, "Temperature Fahrenheit", "Temp F", "°F", 96.0, 103.0)]
LINKS = ["chartevents"] * 7 + ["inputevents", "outputevents", "procedureevents", "datetimeevents", "ingredientevents"]
CAREUNITS = ["Medical Intensive Care Unit (MICU)", "Surgical Intensive Care Unit (SICU)", "Cardiac Vascular "
             "Intensive Care Unit (CVICU)", "Coronary Care Unit (CCU)", "Trauma SICU (TSICU)", "Neuro Intermediate"]
WARDS = ["Emergency Department", "Medicine", "Surgery", "Cardiology", "Neurology", "Discharge Lounge"]
RACES = ["WHITE"] * 6 + ["BLACK/AFRICAN AMERICAN"] * 2 + ["HISPANIC/LATINO - PUERTO RICAN", "ASIAN - CHINESE",
                                                           "UNKNOWN", "OTHER"]


def dims(n: int) -> dict[str, int]:
    """Dimension sizes: the official ones where they are small, growing with N (up to official) where large."""
    return {"d_labitems": 1650, "d_items": 4095, "d_icd_diagnoses": min(112107, 400 + 4 * n),
            "d_icd_procedures": min(86423, 300 + 2 * n), "d_hcpcs": min(89208, 200 + n),
            "provider": min(40000, 200 + n // 5), "caregiver": min(17000, 100 + n // 10)}


def _icd(i: int, version: int) -> str:
    return (f"{chr(65 + i % 26)}{i % 1000:03d}{i // 1000:d}" if version == 10 else f"{i % 100000:05d}")[:7]


def generate(out: Path, *, patients: int, seed: int) -> Writer:
    rng = Rng(seed)
    ctx = Ctx(rng)
    size = dims(patients)
    tables = list(DS.tables)
    w = Writer(out, tables)
    lab_items = [x[0] for x in LABS] + [52000 + i for i in range(size["d_labitems"] - len(LABS))]
    item_links = {}
    # -- dimensions --------------------------------------------------------------------------------------------
    for itemid, label, fluid, cat, *_ in LABS:
        w.add("d_labitems", [str(itemid), csv_text(label), fluid, cat])
    for itemid in lab_items[len(LABS):]:
        w.add("d_labitems", [str(itemid), rng.words(2, 50), rng.choice(["Blood", "Urine", "Other Body Fluid"]),
                             rng.choice(["Chemistry", "Hematology", "Blood Gas"])])
    for itemid, label, abbr, uom, lo, hi in VITALS:
        w.add("d_items", [str(itemid), csv_text(label), csv_text(abbr), "chartevents", "Routine Vital Signs",
                          csv_text(uom), "Numeric", str(lo), str(hi)])
        item_links[itemid] = "chartevents"
    for i in range(size["d_items"] - len(VITALS)):
        itemid = 224000 + i
        link = LINKS[i % len(LINKS)]
        item_links[itemid] = link
        w.add("d_items", [str(itemid), rng.words(3, 100), rng.words(1, 50), link, rng.words(1, 50),
                          rng.maybe(0.6, "mg"), "Numeric" if link != "datetimeevents" else "Date and time",
                          NULL, NULL])
    by_link: dict[str, list[int]] = {}
    for itemid, link in item_links.items():
        by_link.setdefault(link, []).append(itemid)
    chart_rare = by_link["chartevents"][len(VITALS):]
    for i in range(size["d_icd_diagnoses"]):
        v = 10 if i % 3 else 9
        w.add("d_icd_diagnoses", [_icd(i, v), str(v), rng.words(5, 255, quirks=0.02)])
    for i in range(size["d_icd_procedures"]):
        v = 10 if i % 3 else 9
        w.add("d_icd_procedures", [_icd(i, v), str(v), rng.words(5, 222)])
    for i in range(size["d_hcpcs"]):
        w.add("d_hcpcs", [f"{90000 + i:05d}"[-5:], rng.maybe(0.8, str(rng.randint(1, 9))), rng.words(8), rng.words(3)])
    providers = [f"P{i:05d}"[:10] for i in range(size["provider"])]
    for p in providers:
        w.add("provider", [p])
    caregivers = [str(10000 + i) for i in range(size["caregiver"])]
    for c in caregivers:
        w.add("caregiver", [c])
    n_dx, n_px, n_hc = size["d_icd_diagnoses"], size["d_icd_procedures"], size["d_hcpcs"]

    # -- per patient -------------------------------------------------------------------------------------------
    g = {name: TableGen(T[name], "x", 0) for name in ("pharmacy", "poe", "emar_detail", "microbiologyevents",
                                                      "inputevents", "ingredientevents", "procedureevents")}
    for i in range(patients):
        subject = 10000000 + i
        year = rng.randint(2110, 2200)
        age = min(91, max(18, int(rng.gauss(62, 17))))
        dod = rng.random() < 0.12
        w.add("patients", [str(subject), rng.choice("MF"), str(age), str(year),
                           rng.choice(["2008 - 2010", "2011 - 2013", "2014 - 2016", "2017 - 2019", "2020 - 2022"]),
                           f"{year + 1}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}" if dod else NULL])
        ctx.row = {"subject": subject, "time": dt.datetime(year, 1, 1) + dt.timedelta(days=rng.randint(0, 300))}
        for k in range(rng.count(21)):
            w.add("omr", [str(subject), (ctx.row["time"] + dt.timedelta(days=k)).strftime("%Y-%m-%d"), "1",
                          rng.choice(["Blood Pressure", "Weight (Lbs)", "BMI (kg/m2)", "Height (Inches)"]),
                          rng.choice(["120/80", "181.5", "27.3", "68"])])
        t = ctx.row["time"]
        for _ in range(max(1, rng.count(1.5))):
            hadm = ctx.next_id("hadm", 20000000)
            admit = t + dt.timedelta(days=rng.randint(1, 200), minutes=rng.randint(0, 1440))
            los = dt.timedelta(hours=rng.randint(20, 24 * 14))
            t = admit + los
            died = rng.random() < 0.03
            ctx.row.update(hadm=hadm, time=admit)
            w.add("admissions", [str(subject), str(hadm), ts(admit), ts(admit + los), ts(admit + los) if died else NULL,
                                 rng.choice(["EW EMER.", "URGENT", "ELECTIVE", "OBSERVATION ADMIT", "DIRECT EMER."]),
                                 rng.choice(providers), "EMERGENCY ROOM", rng.maybe(0.8, "HOME"),
                                 rng.choice(["Medicare", "Medicaid", "Private", "Other"]),
                                 rng.choice(["English", "English", "English", "Spanish", "Chinese", "?"]),
                                 rng.choice(["MARRIED", "SINGLE", "WIDOWED", "DIVORCED", NULL]),
                                 csv_text(rng.choice(RACES)),
                                 ts(admit - dt.timedelta(hours=3)), ts(admit), "1" if died else "0"])
            span = int(los.total_seconds() // 60)

            def at(admit: dt.datetime = admit, span: int = span) -> dt.datetime:
                return admit + dt.timedelta(minutes=rng.randint(0, span))

            for _ in range(max(1, rng.count(4.4))):
                tin = at()
                w.add("transfers", [str(subject), str(hadm), str(ctx.next_id("transfer", 30000000)),
                                    rng.choice(["ED", "admit", "transfer", "discharge"]), csv_text(rng.choice(WARDS)),
                                    ts(tin), ts(tin + dt.timedelta(hours=rng.randint(1, 48)))])
            for k in range(rng.count(11.7)):
                j = rng.randrange(n_dx)
                v = 10 if j % 3 else 9
                w.add("diagnoses_icd", [str(subject), str(hadm), str(k + 1), _icd(j, v), str(v)])
            for k in range(rng.count(1.6)):
                j = rng.randrange(n_px)
                v = 10 if j % 3 else 9
                w.add("procedures_icd", [str(subject), str(hadm), str(k + 1), at().strftime("%Y-%m-%d"), _icd(j, v),
                                         str(v)])
            for _ in range(rng.count(1.4)):
                w.add("drgcodes", [str(subject), str(hadm), rng.choice(["HCFA", "APR"]), str(rng.randint(1, 999)),
                                   rng.words(4, 195), rng.maybe(0.5, str(rng.randint(1, 4))),
                                   rng.maybe(0.5, str(rng.randint(1, 4)))])
            for k in range(rng.count(0.34)):
                w.add("hcpcsevents", [str(subject), str(hadm), at().strftime("%Y-%m-%d"),
                                      f"{90000 + rng.randrange(n_hc):05d}"[-5:], str(k + 1), rng.words(3)])
            for k in range(max(1, rng.count(1.1))):
                w.add("services", [str(subject), str(hadm), ts(admit + dt.timedelta(minutes=k)),
                                   NULL if k == 0 else "MED", rng.choice(["MED", "SURG", "CMED", "NMED", "ORTHO"])])
            # labs: the second-largest table
            for _ in range(rng.count(290)):
                itemid, *_r, uom, lo, hi = LABS[rng.randrange(len(LABS))] if rng.random() < 0.8 else \
                    (rng.choice(lab_items), "", "", "", "units", 0, 100)
                value = rng.uniform(lo, hi)
                when = at()
                flag = "abnormal" if value > hi * 0.9 else NULL
                w.add("labevents", [str(ctx.next_id("labevent")), str(subject), str(hadm),
                                    str(ctx.next_id("specimen", 1000000)), str(itemid), rng.maybe(0.3, providers[0]),
                                    ts(when), ts(when + dt.timedelta(minutes=45)), f"{value:.1f}", f"{value:.2f}",
                                    csv_text(uom), str(lo), str(hi), flag, rng.choice(["ROUTINE", "STAT"]),
                                    rng.words(6, quirks=0.3) if rng.random() < 0.05 else NULL])
            for _ in range(rng.count(7.3)):
                when = at()
                w.add("microbiologyevents", [str(ctx.next_id("micro")), str(subject), str(hadm),
                                             str(ctx.next_id("mspec", 5000000)), NULL, ts(when.replace(hour=0,
                                             minute=0)), ts(when), str(70000 + rng.randint(0, 50)),
                                             # the real file has quoted empty strings under NOT NULL here
                                             EMPTY if rng.random() < 0.05 else csv_text(rng.choice(
                                                 ["BLOOD CULTURE", "URINE", "SPUTUM", "MRSA SCREEN"])),
                                             "1", NULL, NULL, str(90000 + rng.randint(0, 50)), rng.words(2, 100),
                                             NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                             rng.words(5, quirks=0.3) if rng.random() < 0.2 else NULL])
            poes = []
            for k in range(rng.count(95)):
                poe = f"{subject}-{ctx.next_id(f'poe{subject}')}"
                poes.append(poe)
                w.add("poe", [poe, str(k + 1), str(subject), str(hadm), ts(at()),
                              rng.choice(["Medications", "Lab", "General Care", "Nutrition", "IV therapy"]),
                              NULL, rng.choice(["New", "Change", "D/C"]), NULL, NULL, rng.choice(providers),
                              rng.choice(["Active", "Inactive"])])
                if rng.random() < 0.16:
                    w.add("poe_detail", [poe, str(k + 1), str(subject), rng.choice(["Admit to", "Code status"]),
                                         rng.words(2)])
            for _ in range(rng.count(33)):
                pharmacy = ctx.next_id("pharmacy")
                start = at()
                w.add("pharmacy", [str(subject), str(hadm), str(pharmacy), rng.choice(poes) if poes else NULL,
                                   ts(start), ts(start + dt.timedelta(hours=12)), rng.words(2, quirks=0.05),
                                   rng.choice(["Unit Dose", "IV Piggyback"]), "Discontinued",
                                   ts(start), NULL, rng.choice(["PO", "IV"]), "Q8H", NULL, NULL, NULL, NULL,
                                   NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL])
                w.add("prescriptions", [str(subject), str(hadm), str(pharmacy), NULL, NULL, NULL, ts(start),
                                        ts(start + dt.timedelta(hours=12)), "MAIN",
                                        EMPTY if rng.random() < 0.01 else rng.words(2, 255, quirks=0.05),
                                        NULL, NULL, NULL, NULL, NULL, "1", "mg", NULL, NULL, NULL, "PO"])
            for _ in range(rng.count(78)):
                emar = f"{subject}-{ctx.next_id(f'emar{subject}')}"
                when = at()
                w.add("emar", [str(subject), str(hadm), emar, "1", rng.choice(poes) if poes else f"{subject}-0",
                               NULL, NULL, ts(when), rng.words(2, quirks=0.02), rng.choice(["Administered",
                               "Not Given", "Flushed"]), ts(when), ts(when + dt.timedelta(minutes=5))])
                for _ in range(rng.count(2)):
                    vals = [f(ctx) for f in g["emar_detail"].fns]
                    vals[0], vals[1] = str(subject), emar
                    w.add("emar_detail", vals)
            # ICU stays
            if rng.random() < 0.17:
                stay = ctx.next_id("stay", 30000000)
                intime = at()
                out = intime + dt.timedelta(hours=rng.randint(12, 24 * 8))
                unit = rng.choice(CAREUNITS)
                w.add("icustays", [str(subject), str(hadm), str(stay), csv_text(unit), csv_text(unit), ts(intime),
                                   ts(out), f"{(out - intime).total_seconds() / 86400:.4f}"])
                base = [str(subject), str(hadm), str(stay)]
                icu_span = int((out - intime).total_seconds() // 60)
                rows = rng.count(4580)
                step = max(1, icu_span // max(1, rows))
                for k in range(rows):
                    when = intime + dt.timedelta(minutes=k * step)
                    if rng.random() < 0.85:
                        itemid, _, _, uom, lo, hi = VITALS[k % len(VITALS)]
                        v = rng.uniform(lo, hi)
                        value, num = f"{v:.0f}", f"{v:.0f}"
                    else:
                        itemid, uom, value, num = rng.choice(chart_rare), NULL, rng.words(1, 200), NULL
                    w.add("chartevents", base + [rng.choice(caregivers), ts(when), ts(when + dt.timedelta(
                        minutes=3)), str(itemid), value, num, csv_text(uom) if uom else NULL, "0"])
                for k in range(rng.count(105)):
                    when = intime + dt.timedelta(minutes=rng.randint(0, icu_span))
                    w.add("datetimeevents", base + [NULL, ts(intime + dt.timedelta(minutes=k)), NULL,
                                                    str(rng.choice(by_link["datetimeevents"])), ts(when),
                                                    "Date", "0"])
                for name, rate in (("inputevents", 116), ("ingredientevents", 120), ("procedureevents", 8.6)):
                    pool = by_link[name]
                    for _ in range(rng.count(rate)):
                        ctx.row["time"] = intime + dt.timedelta(minutes=rng.randint(0, icu_span))
                        vals = [f(ctx) for f in g[name].fns]
                        cols = [c.name for c in T[name].columns]
                        vals[:3] = base
                        vals[cols.index("itemid")] = str(rng.choice(pool))
                        vals[cols.index("orderid")] = str(ctx.next_id(f"order{name}"))
                        vals[cols.index("caregiver_id")] = rng.choice(caregivers)
                        w.add(name, vals)
                for k in range(rng.count(57)):
                    when = intime + dt.timedelta(minutes=k * 17)
                    w.add("outputevents", base + [NULL, ts(when), ts(when), str(rng.choice(by_link["outputevents"])),
                                                  f"{rng.uniform(0, 500):.0f}", "ml"])
        ctx.row.clear()
    w.close(tables)
    return w


__all__ = ["generate", "dims"]
