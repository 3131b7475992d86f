"""MIMIC-IV-ED, MIMIC-IV-Note, MIMIC-CXR-JPG metadata and eICU-CRD, written from the published definitions."""

from __future__ import annotations

from datathon.datasets.catalogue.spec import Dataset, Table, columns, extra_indexes, fk, keys, official_indexes

# MIMIC-IV-ED: keys and indexes as the official build (mimic-code mimic-iv-ed/buildmimic/postgres constraint.sql,
# index.sql) makes them; the extra indexes are datathon's, built only with `extra_keys: true`.
ED = Dataset(kind="mimic-iv-ed", title="MIMIC-IV-ED", versions=("2.2",), tables=tuple(
    Table(name=n, schema="mimiciv_ed", file=f"ed/{n}.csv.gz", columns=columns(c), primary_key=keys(pk),
          indexes=official_indexes(n, idx), foreign_keys=tuple(fks), counts={"2.2": rows} if rows else {},
          extra_indexes=extra_indexes(n, extra))
    for n, c, pk, idx, fks, extra, rows in [
        ("edstays", "subject_id int NN, hadm_id int, stay_id int NN, intime ts0 NN, outtime ts0 NN, gender vc1 NN, "
         "race vc60, arrival_transport vc50 NN, disposition vc255", "stay_id",
         ["subject_id, hadm_id, stay_id", "intime, outtime"], [], ["subject_id"], 425087),
        ("diagnosis", "subject_id int NN, stay_id int NN, seq_num int NN, icd_code vc8 NN, icd_version si NN, "
         "icd_title text NN", "stay_id, seq_num", ["subject_id, stay_id", "icd_code, icd_version"],
         [fk("stay_id", "edstays")], [], 899050),
        ("medrecon", "subject_id int NN, stay_id int NN, charttime ts0, name vc255, gsn vc10, ndc vc12, etc_rn si, "
         "etccode vc8, etcdescription vc255", "", ["subject_id, stay_id, charttime"], [fk("stay_id", "edstays")],
         ["stay_id"], 2987342),
        ("pyxis", "subject_id int NN, stay_id int NN, charttime ts0, med_rn si NN, name vc255, gsn_rn si NN, "
         "gsn vc10", "", ["subject_id, stay_id, charttime", "gsn"], [fk("stay_id", "edstays")], ["stay_id"],
         1586053),
        ("triage", "subject_id int NN, stay_id int NN, temperature numeric, heartrate numeric, resprate numeric, "
         "o2sat numeric, sbp numeric, dbp numeric, pain text, acuity numeric, chiefcomplaint vc255", "stay_id",
         ["subject_id, stay_id"], [fk("stay_id", "edstays")], [], 425087),
        ("vitalsign", "subject_id int NN, stay_id int NN, charttime ts0, temperature numeric, heartrate numeric, "
         "resprate numeric(10,4), o2sat numeric, sbp int, dbp int, rhythm text, pain text", "stay_id, charttime",
         ["subject_id, stay_id, charttime"], [fk("stay_id", "edstays")], ["stay_id"], 1564610),
    ]))

# MIMIC-IV-Note: the official build (mimic-code mimic-iv-note/buildmimic/postgres) creates and loads the tables,
# with no key or index at all; datathon's keys and indexes come only with `extra_keys: true`.
NOTE = Dataset(kind="mimic-iv-note", title="MIMIC-IV-Note", versions=("2.2",), tables=tuple(
    Table(name=n, schema="mimiciv_note", file=f"note/{n}.csv.gz", columns=columns(c), extra_primary_key=keys(pk),
          extra_indexes=extra_indexes(n, idx), extra_foreign_keys=tuple(fks))
    for n, c, pk, idx, fks in [
        ("discharge", "note_id vc25 NN, subject_id int NN, hadm_id int NN, note_type char(2) NN, note_seq int NN, "
         "charttime ts NN, storetime ts, text text NN", "note_id", ["subject_id", "hadm_id"], []),
        ("discharge_detail", "note_id vc25 NN, subject_id int NN, field_name vc255 NN, field_value text NN, "
         "field_ordinal int NN", "", ["note_id"], [fk("note_id", "discharge")]),
        ("radiology", "note_id vc25 NN, subject_id int NN, hadm_id int, note_type char(2) NN, note_seq int NN, "
         "charttime ts NN, storetime ts, text text NN", "note_id", ["subject_id", "hadm_id"], []),
        ("radiology_detail", "note_id vc25 NN, subject_id int NN, field_name vc255 NN, field_value text NN, "
         "field_ordinal int NN", "", ["note_id"], [fk("note_id", "radiology")]),
    ]))

_LABELS = ", ".join(f"{x} dp" for x in (
    "atelectasis", "cardiomegaly", "consolidation", "edema", "enlarged_cardiomediastinum", "fracture", "lung_lesion",
    "lung_opacity", "no_finding", "pleural_effusion", "pleural_other", "pneumonia", "pneumothorax", "support_devices"))
# MIMIC-CXR-JPG metadata has no official PostgreSQL build: every key and index here is datathon's own, built
# only with `extra_keys: true`.
CXR = Dataset(kind="mimic-cxr", title="MIMIC-CXR-JPG metadata", versions=("2.0.0",), tables=tuple(
    Table(name=n, schema="mimiciv_cxr", file=f, columns=columns(c), extra_primary_key=keys(pk),
          extra_indexes=extra_indexes(n, idx), counts={"2.0.0": rows} if rows else {})
    for n, f, c, pk, idx, rows in [
        ("record_list", "cxr-record-list.csv.gz", "subject_id int NN, study_id int NN, dicom_id vc64 NN, path text NN",
         "dicom_id", ["subject_id", "study_id"], 377110),
        ("study_list", "cxr-study-list.csv.gz", "subject_id int NN, study_id int NN, path text NN", "study_id",
         ["subject_id"], 227835),
        ("metadata", "mimic-cxr-2.0.0-metadata.csv.gz",
         "dicom_id vc64 NN, subject_id int NN, study_id int NN, performedprocedurestepdescription text, "
         "viewposition vc32, rows int, columns int, studydate int, studytime dp, "
         "procedurecodesequence_codemeaning text, viewcodesequence_codemeaning text, "
         "patientorientationcodesequence_codemeaning text", "dicom_id", ["subject_id", "study_id"], 377110),
        ("split", "mimic-cxr-2.0.0-split.csv.gz", "dicom_id vc64 NN, study_id int NN, subject_id int NN, split vc16 NN",
         "dicom_id", [], 377110),
        ("chexpert", "mimic-cxr-2.0.0-chexpert.csv.gz", f"subject_id int NN, study_id int NN, {_LABELS}", "study_id",
         [], 0),
        ("negbio", "mimic-cxr-2.0.0-negbio.csv.gz", f"subject_id int NN, study_id int NN, {_LABELS}", "study_id",
         [], 0),
    ]))

# eICU-CRD v2.0: file name (camelCase) -> (columns, primary key, official rows). Lengths where published.
_EICU = {
    "admissionDrug": ("admissiondrugid int NN, patientunitstayid int NN, drugoffset int NN, drugenteredoffset int NN, "
                      "drugnotetype vc, specialtytype vc, usertype vc NN, rxincluded vc, writtenineicu vc, "
                      "drugname vc NN, drugdosage numeric, drugunit vc, drugadmitfrequency vc NN, drughiclseqno int",
                      "admissiondrugid", 874920),
    "admissionDx": ("admissiondxid int NN, patientunitstayid int NN, admitdxenteredoffset int NN, admitdxpath vc NN, "
                    "admitdxname vc, admitdxtext vc", "admissiondxid", 626858),
    "allergy": ("allergyid int NN, patientunitstayid int NN, allergyoffset int NN, allergyenteredoffset int NN, "
                "allergynotetype vc, specialtytype vc, usertype vc NN, rxincluded vc, writtenineicu vc, "
                "drugname vc NN, allergytype vc, allergyname vc, drughiclseqno int", "allergyid", 251949),
    "apacheApsVar": ("apacheapsvarid int, patientunitstayid int, intubated si, vent si, dialysis si, eyes si, "
                     "motor si, verbal si, meds si, urine dp, wbc dp, temperature dp, respiratoryrate dp, sodium dp, "
                     "heartrate dp, meanbp dp, ph dp, hematocrit dp, creatinine dp, albumin dp, pao2 dp, pco2 dp, "
                     "bun dp, glucose dp, bilirubin dp, fio2 dp", "apacheapsvarid", 171177),
    "apachePatientResult": ("apachepatientresultsid int NN, patientunitstayid int NN, physicianspeciality vc, "
                            "physicianinterventioncategory vc, acutephysiologyscore int, apachescore int, "
                            "apacheversion vc NN, predictedicumortality vc, actualicumortality vc, "
                            "predictediculos dp, actualiculos dp, predictedhospitalmortality vc, "
                            "actualhospitalmortality vc, predictedhospitallos dp, actualhospitallos dp, preopmi int, "
                            "preopcardiaccath int, ptcawithin24h int, unabridgedunitlos dp, unabridgedhosplos dp, "
                            "actualventdays dp, predventdays dp, unabridgedactualventdays dp",
                            "apachepatientresultsid", 297064),
    "apachePredVar": ("apachepredvarid int, patientunitstayid int, sicuday si, saps3day1 si, saps3today si, "
                      "saps3yesterday si, gender si, teachtype si, region si, bedcount si, admitsource si, "
                      "graftcount si, meds si, verbal si, motor si, eyes si, age si, admitdiagnosis vc, "
                      "thrombolytics si, diedinhospital si, aids si, hepaticfailure si, lymphoma si, "
                      "metastaticcancer si, leukemia si, immunosuppression si, cirrhosis si, electivesurgery si, "
                      "activetx si, readmit si, ima si, midur si, ventday1 si, oobventday1 si, oobintubday1 si, "
                      "diabetes si, managementsystem si, var03hspxlos dp, pao2 dp, fio2 dp, ejectfx dp, "
                      "creatinine dp, dischargelocation si, visitnumber si, amilocation si, day1meds si, "
                      "day1verbal si, day1motor si, day1eyes si, day1pao2 dp, day1fio2 dp", "apachepredvarid", 171177),
    "carePlanCareProvider": ("cplcareprovderid int NN, patientunitstayid int NN, careprovidersaveoffset int NN, "
                             "providertype vc, specialty vc, interventioncategory vc, managingphysician vc, "
                             "activeupondischarge vc NN", "cplcareprovderid", 502765),
    "carePlanEOL": ("cpleolid int NN, patientunitstayid int NN, cpleolsaveoffset int NN, "
                    "cpleoldiscussionoffset int, activeupondischarge vc", "cpleolid", 1433),
    "carePlanGeneral": ("cplgeneralid int NN, patientunitstayid int NN, activeupondischarge vc NN, "
                        "cplitemoffset int NN, cplgroup vc NN, cplitemvalue vc", "cplgeneralid", 3115018),
    "carePlanGoal": ("cplgoalid int NN, patientunitstayid int NN, cplgoaloffset int NN, cplgoalcategory vc, "
                     "cplgoalvalue vc, cplgoalstatus vc, activeupondischarge vc NN", "cplgoalid", 504139),
    "carePlanInfectiousDisease": ("cplinfectid int NN, patientunitstayid int NN, activeupondischarge vc NN, "
                                  "cplinfectdiseaseoffset int NN, infectdiseasesite vc, infectdiseaseassessment vc, "
                                  "responsetotherapy vc, treatment vc", "cplinfectid", 8056),
    "customLab": ("customlabid int NN, patientunitstayid int NN, labotheroffset int NN, labothertypeid int NN, "
                  "labothername vc, labotherresult vc, labothervaluetext vc", "customlabid", 1082),
    "diagnosis": ("diagnosisid int NN, patientunitstayid int NN, activeupondischarge vc64, diagnosisoffset int NN, "
                  "diagnosisstring vc200 NN, icd9code vc100, diagnosispriority vc10 NN", "diagnosisid", 2710672),
    "hospital": ("hospitalid int NN, numbedscategory vc32, teachingstatus boolean, region vc64", "hospitalid", 208),
    "infusionDrug": ("infusiondrugid int NN, patientunitstayid int NN, infusionoffset int NN, drugname vc255 NN, "
                     "drugrate vc255, infusionrate vc255, drugamount vc255, volumeoffluid vc255, patientweight vc255",
                     "infusiondrugid", 4803719),
    "intakeOutput": ("intakeoutputid int NN, patientunitstayid int NN, intakeoutputoffset int NN, "
                     "intaketotal numeric(12,4), outputtotal numeric(12,4), dialysistotal numeric(12,4), "
                     "nettotal numeric(12,4), intakeoutputentryoffset int NN, cellpath vc500, celllabel vc255, "
                     "cellvaluenumeric numeric(12,4) NN, cellvaluetext vc255 NN", "intakeoutputid", 12030289),
    "lab": ("labid int NN, patientunitstayid int NN, labresultoffset int NN, labtypeid numeric(3,0) NN, "
            "labname vc256, labresult numeric(11,4), labresulttext vc255, labmeasurenamesystem vc255, "
            "labmeasurenameinterface vc255, labresultrevisedoffset int", "labid", 39132531),
    "medication": ("medicationid int NN, patientunitstayid int NN, drugorderoffset int NN, drugstartoffset int NN, "
                   "drugivadmixture vc6 NN, drugordercancelled vc6 NN, drugname vc220, drughiclseqno int, "
                   "dosage vc60, routeadmin vc120, frequency vc255, loadingdose vc120 NN, prn vc6 NN, "
                   "drugstopoffset int NN, gtc int NN", "medicationid", 7301853),
    "microLab": ("microlabid int NN, patientunitstayid int NN, culturetakenoffset int NN, culturesite vc NN, "
                 "organism vc NN, antibiotic vc, sensitivitylevel vc", "microlabid", 16996),
    "note": ("noteid int NN, patientunitstayid int NN, noteoffset int NN, noteenteredoffset int NN, notetype vc NN, "
             "notepath vc NN, notevalue vc, notetext vc", "noteid", 2254179),
    "nurseAssessment": ("nurseassessid int NN, patientunitstayid int NN, nurseassessoffset int NN, "
                        "nurseassessentryoffset int NN, cellattributepath vc NN, celllabel vc NN, cellattribute vc NN, "
                        "cellattributevalue vc", "nurseassessid", 15602498),
    "nurseCare": ("nursecareid int NN, patientunitstayid int NN, celllabel vc NN, nursecareoffset int NN, "
                  "nursecareentryoffset int NN, cellattributepath vc NN, cellattribute vc NN, cellattributevalue vc",
                  "nursecareid", 8311132),
    "nurseCharting": ("nursingchartid bigint NN, patientunitstayid int NN, nursingchartoffset int NN, "
                      "nursingchartentryoffset int NN, nursingchartcelltypecat vc255 NN, "
                      "nursingchartcelltypevallabel vc255, nursingchartcelltypevalname vc255, nursingchartvalue vc255",
                      "", 151604232),
    "pastHistory": ("pasthistoryid int NN, patientunitstayid int NN, pasthistoryoffset int NN, "
                    "pasthistoryenteredoffset int NN, pasthistorynotetype vc, pasthistorypath vc NN, "
                    "pasthistoryvalue vc, pasthistoryvaluetext vc", "pasthistoryid", 1149180),
    "patient": ("patientunitstayid int, patienthealthsystemstayid int, gender vc25, age vc10, ethnicity vc50, "
                "hospitalid int, wardid int, apacheadmissiondx vc1000, admissionheight numeric(10,2), "
                "hospitaladmittime24 vc8, hospitaladmitoffset int, hospitaladmitsource vc30, "
                "hospitaldischargeyear si, hospitaldischargetime24 vc8, hospitaldischargeoffset int, "
                "hospitaldischargelocation vc100, hospitaldischargestatus vc10, unittype vc50, unitadmittime24 vc8, "
                "unitadmitsource vc100, unitvisitnumber int, unitstaytype vc15, admissionweight numeric(10,2), "
                "dischargeweight numeric(10,2), unitdischargetime24 vc8, unitdischargeoffset int, "
                "unitdischargelocation vc100, unitdischargestatus vc10, uniquepid vc10", "patientunitstayid", 200859),
    "physicalExam": ("physicalexamid int, patientunitstayid int NN, physicalexamoffset int NN, "
                     "physicalexampath vc NN, physicalexamvalue vc, physicalexamtext vc", "physicalexamid", 9212316),
    "respiratoryCare": ("respcareid int, patientunitstayid int, respcarestatusoffset int, currenthistoryseqnum int, "
                        "airwaytype vc, airwaysize vc, airwayposition vc, cuffpressure numeric, ventstartoffset int, "
                        "ventendoffset int, priorventstartoffset int, priorventendoffset int, apneaparams vc, "
                        "lowexhmvlimit numeric, hiexhmvlimit numeric, lowexhtvlimit numeric, hipeakpreslimit numeric, "
                        "lowpeakpreslimit numeric, hirespratelimit numeric, lowrespratelimit numeric, "
                        "sighpreslimit numeric, lowironoxlimit numeric, highironoxlimit numeric, "
                        "meanairwaypreslimit numeric, peeplimit numeric, cpaplimit numeric, setapneainterval vc, "
                        "setapneatv vc, setapneaippeephigh vc, setapnearr vc, setapneapeakflow vc, "
                        "setapneainsptime vc, setapneaie vc, setapneafio2 vc", "respcareid", 865381),
    "respiratoryCharting": ("respchartid int, patientunitstayid int, respchartoffset int, respchartentryoffset int, "
                            "respcharttypecat vc, respchartvaluelabel vc, respchartvalue vc", "respchartid", 20168176),
    "treatment": ("treatmentid int, patientunitstayid int, treatmentoffset int, treatmentstring vc, "
                  "activeupondischarge vc", "treatmentid", 3688745),
    "vitalAperiodic": ("vitalaperiodicid int NN, patientunitstayid int NN, observationoffset int NN, "
                       "noninvasivesystolic dp, noninvasivediastolic dp, noninvasivemean dp, paop dp, "
                       "cardiacoutput dp, cardiacinput dp, svr dp, svri dp, pvr dp, pvri dp", "vitalaperiodicid",
                       25075074),
    "vitalPeriodic": ("vitalperiodicid bigint, patientunitstayid int, observationoffset int, "
                      "temperature numeric(11,4), sao2 int, heartrate int, respiration int, cvp int, etco2 int, "
                      "systemicsystolic int, systemicdiastolic int, systemicmean int, pasystolic int, padiastolic int, "
                      "pamean int, st1 dp, st2 dp, st3 dp, icp int", "vitalperiodicid", 146671642),
}


# The official build (eicu-code build-db/postgres/postgres_add_indexes.sql, the only key script its Makefile
# runs): table -> indexes, each with its primary key. Tables not listed get neither: their id primary keys, the
# index on patientunitstayid and every foreign key into patient (postgres_add_constraints.sql, never run by
# the official Makefile) are datathon's, built only with `extra_keys: true`.
_EICU_OFFICIAL = {
    "admissiondx": ["patientunitstayid"], "apacheapsvar": ["patientunitstayid"],
    "apachepatientresult": ["patientunitstayid", "apacheversion", "apachescore"],
    "apachepredvar": ["patientunitstayid", "sicuday"], "careplancareprovider": ["patientunitstayid"],
    "careplaneol": ["patientunitstayid"], "careplangeneral": ["patientunitstayid"],
    "careplangoal": ["patientunitstayid"], "careplaninfectiousdisease": ["patientunitstayid"],
    "diagnosis": ["patientunitstayid"], "hospital": [], "lab": ["patientunitstayid"],
    "pasthistory": ["patientunitstayid"],
    "patient": ["patientunitstayid", "patienthealthsystemstayid", "hospitaldischargeyear", "unittype"],
    "treatment": ["patientunitstayid"], "vitalaperiodic": ["patientunitstayid"],
    "vitalperiodic": ["patientunitstayid"],
}
_EICU_NAMES = {"patient": {4: "patient_idx05"}}  # the official script has no patient_idx04 (its column is gone)


def _eicu_table(file: str, cols: str, pk: str, rows: int) -> Table:
    name = file.lower()
    c = columns(cols)
    has_stay = any(x.name == "patientunitstayid" for x in c) and name != "patient"
    official = name in _EICU_OFFICIAL
    indexed = has_stay and not official and name != "nursecharting"  # datathon never indexed nursecharting
    return Table(name=name, schema="eicu_crd", file=f"{file}.csv.gz", columns=c, counts={"2.0": rows},
                 primary_key=keys(pk) if official else (),
                 indexes=official_indexes(name, _EICU_OFFICIAL.get(name, []), _EICU_NAMES.get(name)),
                 extra_primary_key=() if official else keys(pk),
                 extra_indexes=extra_indexes(name, ["patientunitstayid"] if indexed else []),
                 extra_foreign_keys=(fk("patientunitstayid", "patient"),) if has_stay else ())


EICU = Dataset(kind="eicu", title="eICU-CRD", versions=("2.0",),
               tables=tuple(_eicu_table(f, c, pk, n) for f, (c, pk, n) in _EICU.items()))
