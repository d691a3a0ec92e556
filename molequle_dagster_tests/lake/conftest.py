"""Every lake test runs twice: on a local directory and on a real S3 API server (moto's server mode, one
per test session; each test gets a prefix of its own in one bucket)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from molequle_dagster.lake.storage import Storage
from molequle_dagster_tests.lake.s3_server import S3Server, fresh_prefix

BUCKET = "lake-tests"


@dataclass
class LakeRoot:
    """Where a test's lakes live: `new()` gives a fresh lake URI there (several per test are apart)."""

    kind: str  # "local" or "s3"
    base: Path  # the test's temp dir (local lakes live under it)
    server: S3Server | None = None

    @property
    def local(self) -> bool:
        return self.kind == "local"

    def new(self) -> str:
        if self.server is None:
            path = self.base / fresh_prefix()
            path.mkdir()
            return str(path)
        return self.server.uri(BUCKET, fresh_prefix())

    def names(self, uri: str, *parts: str) -> list[str]:
        """Base names of the files in a lake folder (temp files included), sorted."""
        storage = Storage(uri)
        infos = storage.list(storage.path(*parts))
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File)


@pytest.fixture(scope="session")
def s3_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakeRoot]:
    """Lakes on the session's S3 server. Its credentials go into this process's environment (where
    pyarrow's AWS SDK reads them, and where spawned writer processes inherit them) for the session."""
    base = tmp_path_factory.mktemp("s3")
    with S3Server(base) as server, pytest.MonkeyPatch.context() as mp:
        for name, value in server.env.items():
            mp.setenv(name, value)
        server.create_bucket(BUCKET)
        yield LakeRoot("s3", base, server)


@pytest.fixture(params=["local", "s3"])
def lake_root(request: pytest.FixtureRequest, tmp_path: Path) -> LakeRoot:
    if request.param == "local":
        return LakeRoot("local", tmp_path)
    return request.getfixturevalue("s3_root")


@pytest.fixture
def lake_uri(lake_root: LakeRoot) -> str:
    """One fresh lake, on a local directory or on the S3 server."""
    return lake_root.new()
