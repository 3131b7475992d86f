"""The dataset catalogue: every table of the clinical datasets datathon knows, by kind."""

from __future__ import annotations

from datathon.datasets.catalogue.mimic_iv import MIMIC_IV
from datathon.datasets.catalogue.other import CXR, ED, EICU, NOTE
from datathon.datasets.catalogue.spec import Column, Dataset, ForeignKey, Index, Table

DATASETS: dict[str, Dataset] = {d.kind: d for d in (MIMIC_IV, ED, NOTE, CXR, EICU)}

__all__ = ["DATASETS", "Column", "Dataset", "ForeignKey", "Index", "Table"]
