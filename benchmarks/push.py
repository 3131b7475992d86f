"""Parallel push (datathon) against a plain one-file-at-a-time boto3 loop, on the same data and moto server.

    .venv/bin/python benchmarks/push.py [--files 3000] [--file-kb 64] [--big 3] [--big-mb 20] [--concurrency 16]

Both runs upload into fresh buckets of one moto server (started here, in its own process, on a free port).
moto is Python too: the figures measure how well each client keeps a server busy on this machine, not what
S3 would do over a network, where per-request latency is larger and parallelism matters more.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import boto3

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from moto_server import CREDENTIALS, moto_server  # noqa: E402

from datathon.storage.s3 import S3Store  # noqa: E402
from datathon.storage.transfer import push  # noqa: E402


def make_data(folder: Path, *, files: int, file_kb: int, big: int, big_mb: int) -> tuple[int, int]:
    rng = random.Random(1)
    total = 0
    for i in range(files):
        path = folder / "files" / f"p1{i % 10}" / f"p{i % 300:05d}" / f"img{i:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(file_kb * 1024)
        path.write_bytes(data)
        total += len(data)
    for i in range(big):
        data = os.urandom(big_mb * 2**20)
        (folder / f"big{i}.dcm").write_bytes(data)
        total += len(data)
    return files + big, total


def sequential(url: str, folder: Path, bucket: str) -> float:
    """What organizers do by hand today, in Python: one file after the other."""
    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    start = time.perf_counter()
    for p in files:
        s3.upload_file(str(p), bucket, f"cxr/{p.relative_to(folder).as_posix()}")
    return time.perf_counter() - start


def parallel(url: str, folder: Path, bucket: str, concurrency: int) -> float:
    store = S3Store(bucket=bucket, endpoint_url=url, event="bench", concurrency=concurrency, part_size=8 * 2**20)
    store.ensure()
    start = time.perf_counter()
    result = push(store, "cxr", folder, workers=concurrency)
    elapsed = time.perf_counter() - start
    if result.sent_files != sum(1 for p in folder.rglob("*") if p.is_file()):
        raise SystemExit(f"parallel push sent {result.sent_files} files")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--file-kb", type=int, default=64)
    parser.add_argument("--big", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    folder = Path(tempfile.mkdtemp(prefix="benchpush-"))
    try:
        n, size = make_data(folder, files=args.files, file_kb=args.file_kb, big=args.big, big_mb=args.big_mb)
        print(f"data: {n} files, {size / 1e6:.0f} MB ({args.files} x {args.file_kb} KB + {args.big} x "
              f"{args.big_mb} MB); {os.cpu_count()} cores")
        with moto_server() as url:
            seq = sequential(url, folder, "bench-sequential")
            par = parallel(url, folder, "bench-parallel", args.concurrency)
        for name, t in (("sequential boto3 upload_file loop", seq),
                        (f"datathon push, concurrency {args.concurrency}", par)):
            print(f"{name:40s} {t:7.1f} s  {n / t:7.0f} files/s  {size / 1e6 / t:7.1f} MB/s")
        print(f"ratio: {seq / par:.1f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
