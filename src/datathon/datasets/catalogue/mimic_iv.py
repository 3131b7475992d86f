"""MIMIC-IV hosp and icu (v2.2 and v3.x column sets), written from the published table definitions."""

from __future__ import annotations

from datathon.datasets.catalogue.spec import Dataset, Table, columns, extra_indexes, fk, keys, official_indexes

HOSP, ICU = "mimiciv_hosp", "mimiciv_icu"

# name: (columns, primary key, indexes, {version: official rows}); keys and indexes as the official build
# (mimic-code mimic-iv/buildmimic/postgres constraint.sql and index.sql) makes them
_HOSP = {
    "admissions": ("subject_id int NN, hadm_id int NN, admittime ts NN, dischtime ts, deathtime ts, "
                   "admission_type vc40 NN, admit_provider_id vc10, admission_location vc60, discharge_location vc60, "
                   "insurance vc255, language vc25, marital_status vc30, race vc80, edregtime ts, edouttime ts, "
                   "hospital_expire_flag si", "hadm_id", ["admittime, dischtime, deathtime"],
                   {"3.1": 546028, "2.2": 431231}),
    "d_hcpcs": ("code char(5) NN, category si, long_description text, short_description vc180", "code", [],
                {"3.1": 89208, "2.2": 89200}),
    "diagnoses_icd": ("subject_id int NN, hadm_id int NN, seq_num int NN, icd_code char(7), icd_version si",
                      "hadm_id, seq_num, icd_code, icd_version", [], {"3.1": 6364488, "2.2": 4756326}),
    "d_icd_diagnoses": ("icd_code char(7) NN, icd_version si NN, long_title vc255", "icd_code, icd_version",
                        ["long_title"], {"3.1": 112107, "2.2": 109775}),
    "d_icd_procedures": ("icd_code char(7) NN, icd_version si NN, long_title vc222", "icd_code, icd_version",
                         ["long_title"], {"3.1": 86423, "2.2": 85257}),
    "d_labitems": ("itemid int NN, label vc50, fluid vc50, category vc50", "itemid",
                   ["label, fluid, category"], {"3.1": 1650, "2.2": 1622}),
    "drgcodes": ("subject_id int NN, hadm_id int NN, drg_type vc4, drg_code vc10 NN, description vc195, "
                 "drg_severity si, drg_mortality si", "", ["drg_code, drg_type", "description, drg_severity"],
                 {"3.1": 761856, "2.2": 604377}),
    "emar": ("subject_id int NN, hadm_id int, emar_id vc25 NN, emar_seq int NN, poe_id vc25 NN, pharmacy_id int, "
             "enter_provider_id vc10, charttime ts NN, medication text, event_txt vc100, scheduletime ts, "
             "storetime ts NN", "emar_id",
             ["poe_id", "pharmacy_id", "charttime, scheduletime, storetime", "medication"],
             {"3.1": 42808593, "2.2": 26850359}),
    "emar_detail": ("subject_id int NN, emar_id vc25 NN, emar_seq int NN, parent_field_ordinal vc10, "
                    "administration_type vc50, pharmacy_id int, barcode_type vc4, reason_for_no_barcode text, "
                    "complete_dose_not_given vc5, dose_due vc100, dose_due_unit vc50, dose_given vc255, "
                    "dose_given_unit vc50, will_remainder_of_dose_be_given vc5, product_amount_given vc30, "
                    "product_unit vc30, product_code vc30, product_description vc255, "
                    "product_description_other vc255, prior_infusion_rate vc40, infusion_rate vc40, "
                    "infusion_rate_adjustment vc50, infusion_rate_adjustment_amount vc30, infusion_rate_unit vc30, "
                    "route vc10, infusion_complete vc1, completion_interval vc50, new_iv_bag_hung vc1, "
                    "continued_infusion_in_other_location vc1, restart_interval vc2305, side vc10, site vc255, "
                    "non_formulary_visual_verification vc1", "",
                    ["pharmacy_id", "product_code", "route, site, side", "product_description"],
                    {"3.1": 87371064, "2.2": 54744789}),
    "hcpcsevents": ("subject_id int NN, hadm_id int NN, chartdate date, hcpcs_cd char(5) NN, seq_num int NN, "
                    "short_description vc180", "hadm_id, hcpcs_cd, seq_num", ["short_description"],
                    {"3.1": 186074, "2.2": 150771}),
    "labevents": ("labevent_id int NN, subject_id int NN, hadm_id int, specimen_id int NN, itemid int NN, "
                  "order_provider_id vc10, charttime ts0, storetime ts0, value vc200, valuenum dp, valueuom vc20, "
                  "ref_range_lower dp, ref_range_upper dp, flag vc10, priority vc7, comments text", "labevent_id",
                  ["charttime, storetime", "specimen_id"], {"3.1": 158374764, "2.2": 118171367}),
    "microbiologyevents": ("microevent_id int NN, subject_id int NN, hadm_id int, micro_specimen_id int NN, "
                           "order_provider_id vc10, chartdate ts0 NN, charttime ts0, spec_itemid int NN, "
                           "spec_type_desc vc100 NN, test_seq int NN, storedate ts0, storetime ts0, test_itemid int, "
                           "test_name vc100, org_itemid int, org_name vc100, isolate_num si, quantity vc50, "
                           "ab_itemid int, ab_name vc30, dilution_text vc10, dilution_comparison vc20, "
                           "dilution_value dp, interpretation vc5, comments text", "microevent_id",
                           ["chartdate, charttime, storedate, storetime",
                            "spec_itemid, test_itemid, org_itemid, ab_itemid", "micro_specimen_id"],
                           {"3.1": 3988224, "2.2": 3228713}),
    "omr": ("subject_id int NN, chartdate date NN, seq_num int NN, result_name vc100 NN, result_value text NN", "",
            [], {"3.1": 7753027, "2.2": 6439169}),
    "patients": ("subject_id int NN, gender char(1) NN, anchor_age si, anchor_year si NN, "
                 "anchor_year_group vc20 NN, dod date", "subject_id", ["anchor_age", "anchor_year"],
                 {"3.1": 364627, "2.2": 299712}),
    "pharmacy": ("subject_id int NN, hadm_id int NN, pharmacy_id int NN, poe_id vc25, starttime ts3, stoptime ts3, "
                 "medication text, proc_type vc50 NN, status vc50, entertime ts3 NN, verifiedtime ts3, route vc50, "
                 "frequency vc50, disp_sched vc255, infusion_type vc15, sliding_scale vc1, lockout_interval vc50, "
                 "basal_rate real, one_hr_max vc10, doses_per_24_hrs real, duration real, duration_interval vc50, "
                 "expiration_value int, expiration_unit vc50, expirationdate ts3, dispensation vc50, "
                 "fill_quantity vc50", "pharmacy_id", ["poe_id", "starttime, stoptime", "medication", "route"],
                 {"3.1": 17847567, "2.2": 13584514}),
    "poe": ("poe_id vc25 NN, poe_seq int NN, subject_id int NN, hadm_id int, ordertime ts0 NN, order_type vc25 NN, "
            "order_subtype vc50, transaction_type vc15, discontinue_of_poe_id vc25, discontinued_by_poe_id vc25, "
            "order_provider_id vc10, order_status vc15", "poe_id", ["order_type"], {"3.1": 52212109, "2.2": 39366291}),
    "poe_detail": ("poe_id vc25 NN, poe_seq int NN, subject_id int NN, field_name vc255 NN, field_value text",
                   "poe_id, field_name", [], {"3.1": 8504982, "2.2": 3879418}),
    "prescriptions": ("subject_id int NN, hadm_id int NN, pharmacy_id int NN, poe_id vc25, poe_seq int, "
                      "order_provider_id vc10, starttime ts3, stoptime ts3, drug_type vc20 NN, drug vc255 NN, "
                      "formulary_drug_cd vc50, gsn vc255, ndc vc25, prod_strength vc255, form_rx vc25, "
                      "dose_val_rx vc100, dose_unit_rx vc50, form_val_disp vc50, form_unit_disp vc50, "
                      "doses_per_24_hrs real, route vc50", "pharmacy_id, drug_type, drug", ["starttime, stoptime"],
                      {"3.1": 20292611, "2.2": 15416708}),
    "procedures_icd": ("subject_id int NN, hadm_id int NN, seq_num int NN, chartdate date NN, icd_code vc7, "
                       "icd_version si", "hadm_id, seq_num, icd_code, icd_version", [], {"3.1": 859655, "2.2": 669186}),
    "provider": ("provider_id vc10 NN", "", [], {}),
    "services": ("subject_id int NN, hadm_id int NN, transfertime ts NN, prev_service vc10, curr_service vc10",
                 "hadm_id, transfertime, curr_service", [], {"3.1": 593071, "2.2": 468029}),
    "transfers": ("subject_id int NN, hadm_id int, transfer_id int NN, eventtype vc10, careunit vc255, intime ts, "
                  "outtime ts", "transfer_id", ["hadm_id", "intime", "careunit"], {"3.1": 2413581, "2.2": 1890972}),
}

_ICU = {
    "caregiver": ("caregiver_id int NN", "", [], {}),
    "chartevents": ("subject_id int NN, hadm_id int NN, stay_id int NN, caregiver_id int, charttime ts NN, "
                    "storetime ts, itemid int NN, value vc200, valuenum fl, valueuom vc20, warning si", "",
                    ["charttime, storetime"], {"3.1": 432997491, "2.2": 313645063}),
    "datetimeevents": ("subject_id int NN, hadm_id int NN, stay_id int NN, caregiver_id int, charttime ts NN, "
                       "storetime ts, itemid int NN, value ts NN, valueuom vc20, warning si",
                       "stay_id, itemid, charttime", ["charttime, storetime", "value"],
                       {"3.1": 9979761, "2.2": 7112999}),
    "d_items": ("itemid int NN, label vc100 NN, abbreviation vc50 NN, linksto vc30 NN, category vc50 NN, "
                "unitname vc50, param_type vc20 NN, lownormalvalue fl, highnormalvalue fl", "itemid",
                ["label, abbreviation", "category"],
                {"3.1": 4095, "2.2": 4014}),
    "icustays": ("subject_id int NN, hadm_id int NN, stay_id int NN, first_careunit vc255, last_careunit vc255, "
                 "intime ts, outtime ts, los fl", "stay_id",
                 ["first_careunit, last_careunit", "intime, outtime"], {"3.1": 94458, "2.2": 73181}),
    "ingredientevents": ("subject_id int NN, hadm_id int NN, stay_id int, caregiver_id int, starttime ts NN, "
                         "endtime ts NN, storetime ts, itemid int NN, amount fl, amountuom vc20, rate fl, "
                         "rateuom vc20, orderid int NN, linkorderid int, statusdescription vc20, originalamount fl, "
                         "originalrate fl", "", [], {}),
    "inputevents": ("subject_id int NN, hadm_id int NN, stay_id int, caregiver_id int, starttime ts NN, "
                    "endtime ts NN, storetime ts, itemid int NN, amount fl, amountuom vc20, rate fl, rateuom vc20, "
                    "orderid int NN, linkorderid int, ordercategoryname vc50, secondaryordercategoryname vc50, "
                    "ordercomponenttypedescription vc100, ordercategorydescription vc30, patientweight fl, "
                    "totalamount fl, totalamountuom vc50, isopenbag si, continueinnextdept si, "
                    "statusdescription vc20, originalamount fl, originalrate fl", "orderid, itemid",
                    ["starttime, endtime", "ordercategorydescription"], {"3.1": 10953713, "2.2": 8978893}),
    "outputevents": ("subject_id int NN, hadm_id int NN, stay_id int NN, caregiver_id int, charttime ts3 NN, "
                     "storetime ts3 NN, itemid int NN, value fl NN, valueuom vc20", "stay_id, charttime, itemid",
                     ["charttime, storetime"],
                     {"3.1": 5359395, "2.2": 4234967}),
    "procedureevents": ("subject_id int NN, hadm_id int NN, stay_id int NN, caregiver_id int, starttime ts NN, "
                        "endtime ts NN, storetime ts NN, itemid int NN, value fl, valueuom vc20, location vc100, "
                        "locationcategory vc50, orderid int, linkorderid int, ordercategoryname vc50, "
                        "ordercategorydescription vc30, patientweight fl, isopenbag si, continueinnextdept si, "
                        "statusdescription vc20, originalamount fl, originalrate fl", "orderid",
                        ["starttime, endtime", "ordercategoryname"], {"3.1": 808706, "2.2": 696092}),
}


# Official index names that break the <table>_idxNN pattern (index.sql's own spelling, folded to lower case).
_INDEX_NAMES = {"d_icd_diagnoses": {1: "d_icd_diag_idx02"}, "d_icd_procedures": {1: "d_icd_proc_idx02"},
                "emar_detail": {4: "emar_det_idx04"}, "hcpcsevents": {1: "hcpcsevents_idx04"}}
# datathon's additions, built only with `extra_keys: true`: the keys the rule below finds that the official build
# lacks (omr and ingredientevents have none; labevents and transfers no hadm_id key), and an index for joining
# emar_detail to emar.
_EXTRA_FKS = {("omr", "subject_id"), ("ingredientevents", "subject_id"), ("ingredientevents", "hadm_id"),
              ("ingredientevents", "stay_id"), ("ingredientevents", "itemid"), ("labevents", "hadm_id"),
              ("transfers", "hadm_id")}
_EXTRA_INDEXES = {"emar_detail": ["emar_id"]}


def _foreign_keys(name: str, cols: set[str], module: str) -> tuple:
    """Every id column that points at its dimension table; _EXTRA_FKS says which are not official."""
    out = []
    if "subject_id" in cols and name != "patients":
        out.append(fk("subject_id", "patients"))
    if "hadm_id" in cols and name != "admissions":
        out.append(fk("hadm_id", "admissions"))
    if module == "icu":
        if "stay_id" in cols and name != "icustays":
            out.append(fk("stay_id", "icustays"))
        if "itemid" in cols and name != "d_items":
            out.append(fk("itemid", "d_items"))
    if name == "labevents":
        out.append(fk("itemid", "d_labitems"))
    if name == "emar_detail":
        out.append(fk("emar_id", "emar"))
    if name == "poe_detail":
        out.append(fk("poe_id", "poe"))
    if name == "hcpcsevents":
        out.append(fk("hcpcs_cd", "d_hcpcs", "code"))
    return tuple(out)


def _tables(defs: dict, schema: str, module: str) -> list[Table]:
    out = []
    for name, (cols, pk, idx, counts) in defs.items():
        c = columns(cols)
        fks = _foreign_keys(name, {x.name for x in c}, module)
        extra = tuple(k for k in fks if (name, k.columns[0]) in _EXTRA_FKS)
        out.append(Table(name=name, schema=schema, file=f"{module}/{name}.csv.gz", columns=c, primary_key=keys(pk),
                         indexes=official_indexes(name, idx, _INDEX_NAMES.get(name)),
                         foreign_keys=tuple(k for k in fks if k not in extra), counts=counts,
                         extra_indexes=extra_indexes(name, _EXTRA_INDEXES.get(name, [])), extra_foreign_keys=extra))
    return out


MIMIC_IV = Dataset(kind="mimic-iv", title="MIMIC-IV (hosp, icu)",
                   tables=tuple(_tables(_HOSP, HOSP, "hosp") + _tables(_ICU, ICU, "icu")), versions=("3.1", "2.2"))
