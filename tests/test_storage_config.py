"""The storage: part of the event file: each mistake reported with file, line and what to do; nothing changed."""

from __future__ import annotations

import pytest

from datathon.config import load_config
from datathon.errors import ConfigError

BASE = """\
event: sg2026
teams: {count: 2}
databases: [{name: mimic}]
storage:
"""


def problems(tmp_path, storage: str) -> list[str]:
    (tmp_path / "data").mkdir(exist_ok=True)
    path = tmp_path / "datathon.yaml"
    path.write_text(BASE + storage)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    return err.value.problems


def test_a_good_storage_section_loads(tmp_path):
    (tmp_path / "cxr").mkdir()
    path = tmp_path / "datathon.yaml"
    path.write_text(BASE + "  backend: s3\n  bucket: sg2026-imaging\n  prefix: /v1/\n  endpoint_url: http://minio:9000\n"
                    "  datasets: [{name: mimic-cxr-jpg, path: cxr}]\n")
    cfg = load_config(path).config.storage
    assert cfg.prefix == "v1/" and cfg.location("sg2026") == "s3://sg2026-imaging/v1/"
    assert cfg.datasets[0].path == (tmp_path / "cxr").resolve() and cfg.concurrency == 16


@pytest.mark.parametrize("storage, line, needle", [
    ("  backend: s3\n", 4, "backend s3 needs bucket"),
    ("  backend: local\n  bucket: sg2026-imaging\n", 4, "bucket is only for backend s3"),
    ("  backend: s3\n  bucket: sg2026-imaging\n  path: /srv/x\n", 4, "path is only for backend local"),
    ("  path: .\n", 4, "holds the event file's folder"),
    ("  path: data\n  datasets: [{name: cxr, path: data}]\n", 4, "overlaps the folder of dataset cxr"),
    ("  workspace_role_name: ws\n  organizer_role_arn: arn:aws:iam::123456789012:role/org\n", 4,
     "organizer_role_arn, workspace_role_name are only for backend s3"),
    ("  backend: s3\n  bucket: My_Bucket\n", 6, "may hold only a-z, 0-9"),
    ("  backend: s3\n  bucket: 192.168.1.10\n", 6, "must not look like an IP address"),
    ("  backend: s3\n  bucket: ab\n", 6, "3 to 63 characters"),
    ("  backend: s3\n  bucket: my..bucket\n", 6, "two dots"),
    ("  backend: s3\n  bucket: xn--bucket\n", 6, "reserved by AWS"),
    ("  backend: s3\n  bucket: ok-bucket\n  endpoint_url: minio:9000\n", 7, "http:// or https:// URL"),
    ("  backend: s3\n  bucket: ok-bucket\n  organizer_role_arn: organizers\n", 7, "not an IAM role ARN"),
    ("  backend: s3\n  bucket: ok-bucket\n  region: Europe\n", 7, "not an AWS region name"),
    ("  backend: s3\n  bucket: ok-bucket\n  prefix: a/../b\n", 7, "no empty, . or .. parts"),
    ("  concurrency: 0\n", 5, "greater than or equal to 1"),
    ("  part_size_mb: 1\n", 5, "greater than or equal to 5"),
    ("  datasets:\n    - name: CXR\n      path: data\n", 6, "dataset name 'CXR'"),
    ("  datasets:\n    - name: cxr\n      path: nowhere\n", 7, "dataset folder 'nowhere' not found"),
    ("  datasets:\n    - {name: cxr, path: data}\n    - {name: cxr, path: data}\n", 4, "dataset cxr is listed twice"),
    ("  backnd: s3\n", 5, "did you mean 'backend'"),
    ("  datasets:\n    - {name: cxr, path: data, folder: x}\n", 6, "unknown key 'folder'"),
])
def test_bad_storage_settings_are_named_with_their_line(tmp_path, storage, line, needle):
    found = problems(tmp_path, storage)
    assert any(f"datathon.yaml:{line}:" in p and needle in p for p in found), found


def test_status_and_down_do_not_need_the_dataset_folders(tmp_path):
    path = tmp_path / "datathon.yaml"
    path.write_text(BASE + "  datasets: [{name: cxr, path: gone}]\n")
    cfg = load_config(path, check_paths=False).config.storage
    assert cfg.datasets[0].path == (tmp_path / "gone").resolve()
