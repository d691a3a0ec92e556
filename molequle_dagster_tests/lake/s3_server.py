"""A real S3 API server for tests: moto's server mode (`moto_server`, from PyPI) as a child process on
loopback, and lake URIs pointing at it. The credentials are made up per server and handed to the lake only
through the environment (the AWS SDK's chain), as in production: never in a URI."""

from __future__ import annotations

import os
import secrets
import sys
import uuid
from pathlib import Path

import requests

from molequle_dagster_tests.e2e.processes import REPO, Server, free_port, wait_until

MOTO_SERVER = Path(sys.executable).parent / "moto_server"
STARTUP_TIMEOUT_S = 60.0
REGION = "us-east-1"


class S3Server:
    """`moto_server` on 127.0.0.1:<free port>; `env` is what a process needs to use it."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.access_key = f"AKIA{secrets.token_hex(8).upper()}"
        self.secret_key = secrets.token_urlsafe(30)  # the value tests look for in logs and metadata
        self.process = Server(
            "moto-s3", [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", str(self.port)], os.environ, REPO, log_dir
        )
        wait_until(self._answers, STARTUP_TIMEOUT_S, "moto_server to answer", poll=0.1)

    def _answers(self) -> bool:
        self.process.assert_alive()
        try:
            return requests.get(f"http://{self.endpoint}/moto-api/", timeout=2).ok
        except requests.ConnectionError:
            return False

    @property
    def env(self) -> dict[str, str]:
        """The AWS SDK's environment for this server. IMDS is off: the SDK must never look for a role on
        169.254.169.254 (not a loopback address) when the variables are missing."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def create_bucket(self, name: str) -> None:
        # moto accepts any signature; a plain PUT is S3's CreateBucket in us-east-1
        requests.put(f"http://{self.endpoint}/{name}", timeout=10).raise_for_status()

    def uri(self, bucket: str, prefix: str) -> str:
        """A lake URI on this server: endpoint and region as options, no credentials."""
        return f"s3://{bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http&region={REGION}"

    def stop(self) -> None:
        self.process.stop()

    def log_text(self) -> str:
        return self.process.log_path.read_text(errors="replace")

    def __enter__(self) -> S3Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fresh_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"
