"""Both object stores against real things: a temp directory and a real `moto_server`.

The same contract runs on `file://` and `s3://`: put/read/range/download, size and exists,
delete and prefix delete, missing keys, invalid keys, a multipart upload, and the typed
errors of an S3 endpoint that is down or a bucket that does not exist. `moto_server` comes
with the dev extras (`moto[server]`); without it these S3 cases skip, except with CI=true.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.config import Settings
from app.storage import (
    InvalidKey,
    ObjectMissing,
    ObjectStore,
    StorageError,
    StorageUnavailable,
    get_store,
    open_store,
    staged,
)
from app.storage.file_store import FileStore
from app.storage.s3_store import S3Store
from tests.s3 import MotoServer
from tests.server import free_port

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    """A private moto_server for the module, with the process environment pointed at it
    (boto3 reads AWS_ENDPOINT_URL and the keys itself; so do spawned worker processes)."""
    server = MotoServer()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    if request.param == "file":
        return FileStore(tmp_path / "objects")
    moto: MotoServer = request.getfixturevalue("moto")
    # A small multipart threshold, so "large" stays a few MB (S3's smallest part is 5 MiB).
    return S3Store(
        moto.new_bucket(), "some/prefix", multipart_threshold=5 * MIB, multipart_chunk=5 * MIB
    )


def _file(tmp_path: Path, data: bytes, name: str = "src.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_put_read_download_size(store: ObjectStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    store.put_file("a/b/one.bin", _file(tmp_path, data), "application/x-test")
    assert b"".join(store.read_chunks("a/b/one.bin", chunk=1000)) == data
    assert [len(c) for c in store.read_chunks("a/b/one.bin", chunk=4096)] == [4096, 4096, 2048]
    assert store.size("a/b/one.bin") == len(data)
    assert store.exists("a/b/one.bin") and not store.exists("a/b/two.bin")
    target = tmp_path / "down.bin"
    target.write_bytes(b"old content, replaced")
    store.download("a/b/one.bin", target)
    assert target.read_bytes() == data
    # Replacing a key: readers see the new object whole.
    store.put_file("a/b/one.bin", _file(tmp_path, b"second"), "text/plain")
    assert b"".join(store.read_chunks("a/b/one.bin")) == b"second"


def test_ranged_reads(store: ObjectStore, tmp_path: Path) -> None:
    data = b"0123456789" * 100
    store.put_file("r.txt", _file(tmp_path, data), "text/plain")
    assert b"".join(store.read_chunks("r.txt", start=3, length=4)) == b"3456"
    assert b"".join(store.read_chunks("r.txt", start=995)) == b"56789"
    assert b"".join(store.read_chunks("r.txt", start=10, length=25, chunk=7)) == data[10:35]
    assert b"".join(store.read_chunks("r.txt", start=0, length=0)) == b""


def test_missing_keys_are_typed(store: ObjectStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectMissing):
        store.read_chunks("nope/x.bin")  # on the call, before any chunk
    with pytest.raises(ObjectMissing):
        store.size("nope/x.bin")
    with pytest.raises(ObjectMissing):
        store.download("nope/x.bin", tmp_path / "x.bin")
    with pytest.raises(FileNotFoundError):  # what older callers catch
        store.size("nope/x.bin")
    store.delete("nope/x.bin")  # deleting what is absent is not an error
    assert store.delete_prefix("nope/") == 0


def test_delete_and_prefix_delete(store: ObjectStore, tmp_path: Path) -> None:
    src = _file(tmp_path, b"x")
    for key in ("artifacts/j1/a.pdf", "artifacts/j1/sub/b.zip", "artifacts/j10/c.pdf", "d/e"):
        store.put_file(key, src, "application/octet-stream")
    assert store.delete_prefix("artifacts/j1/") == 2
    assert not store.exists("artifacts/j1/a.pdf") and not store.exists("artifacts/j1/sub/b.zip")
    assert store.exists("artifacts/j10/c.pdf")  # a prefix is a folder, not a string prefix
    store.delete("d/e")
    assert not store.exists("d/e")
    assert store.delete_prefix("artifacts/j1/") == 0  # exactly once; again is a no-op


@pytest.mark.parametrize(
    "key", ["", "/etc/passwd", "../outside", "a/../../b", "a//b", "a/./b", "a\\b", "a/"]
)
def test_invalid_keys_are_refused(store: ObjectStore, tmp_path: Path, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put_file(key, _file(tmp_path, b"x"), "text/plain")
    with pytest.raises(ValueError):  # InvalidKey is a ValueError for older callers
        store.size(key)


def test_large_file_streams_in_parts(store: ObjectStore, tmp_path: Path) -> None:
    data = os.urandom(11 * MIB)
    store.put_file("big/file.bin", _file(tmp_path, data), "application/octet-stream")
    assert store.size("big/file.bin") == len(data)
    digest = hashlib.sha256()
    biggest = 0
    for chunk in store.read_chunks("big/file.bin", chunk=MIB):
        biggest = max(biggest, len(chunk))
        digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert biggest <= MIB  # never more than a chunk in memory
    if isinstance(store, S3Store):
        head = store.client.head_object(Bucket=store.bucket, Key="some/prefix/big/file.bin")
        assert head["ETag"].strip('"').endswith("-3")  # 3 parts of <= 5 MiB: a multipart upload
        assert head["ContentType"] == "application/octet-stream"


def test_staging_reads_in_place_or_downloads_and_cleans(store: ObjectStore, tmp_path: Path) -> None:
    store.put_file("docs/d.png", _file(tmp_path, b"png bytes"), "image/png")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with staged(store, "docs/d.png", scratch, prefix="job1-") as path:
        assert path.read_bytes() == b"png bytes"
        if isinstance(store, FileStore):
            assert path == store.path_of("docs/d.png")  # file://: no copy
        else:
            assert path.parent == scratch and path.name.startswith("job1-")
    assert path.exists() == isinstance(store, FileStore)
    assert not list(scratch.glob("job1-*"))  # the staged copy is removed with the block
    with pytest.raises(ObjectMissing), staged(store, "docs/none.png", scratch, prefix="job1-"):
        pass


def test_file_store_writes_atomically_and_moves_when_asked(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "objects")
    source = _file(tmp_path, b"kept")
    store.put_file("k/copy.bin", source, "text/plain")
    assert source.exists()  # copied: the caller's file is left alone
    store.put_file("k/moved.bin", source, "text/plain", move=True)
    assert not source.exists()  # renamed into place on the same filesystem
    assert store.path_of("k/moved.bin").read_bytes() == b"kept"
    folder = store.path_of("k/copy.bin").parent
    assert sorted(p.name for p in folder.iterdir()) == ["copy.bin", "moved.bin"]  # no temp left
    assert store.local_root == (tmp_path / "objects").resolve()


def test_store_urls_and_settings(tmp_path: Path) -> None:
    settings = Settings(ENVIRONMENT="test", VAR_DIR=tmp_path)
    default_root = (tmp_path / "storage").resolve()
    assert settings.storage_url == "file://" + str(default_root)
    assert settings.scratch_dir == (tmp_path / "scratch").resolve()
    assert get_store(settings) is get_store(settings)  # one per URL and process
    legacy = Settings(ENVIRONMENT="test", VAR_DIR=tmp_path, STORAGE_ROOT=tmp_path / "old")
    old_root = (tmp_path / "old").resolve()
    assert legacy.storage_url == "file://" + str(old_root)  # the STORAGE_ROOT alias
    s3 = Settings(ENVIRONMENT="test", VAR_DIR=tmp_path, STORAGE_URL="s3://b/p/q")
    store = get_store(s3)
    assert isinstance(store, S3Store) and (store.bucket, store.prefix) == ("b", "p/q")
    assert store.local_root is None and store.local_path("a/b") is None
    assert "secret" not in repr(store).lower()
    for bad in ("ftp://x/y", "s3:///nobucket", "file://host/path"):
        with pytest.raises(ValueError):
            open_store(bad)


def test_s3_errors_are_typed(
    moto: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = _file(tmp_path, b"x")
    missing_bucket = S3Store(f"absent-{uuid.uuid4().hex[:8]}")
    with pytest.raises(StorageError) as refused:
        missing_bucket.put_file("a/b", src, "text/plain")
    assert not isinstance(refused.value, StorageUnavailable)  # a retry would not help
    with pytest.raises(StorageError, match="does not exist"):
        missing_bucket.ping()
    assert S3Store(moto.new_bucket()).ping().startswith("s3://")

    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    down = S3Store(moto.new_bucket())
    for call in (
        lambda: down.put_file("a/b", src, "text/plain"),
        lambda: down.size("a/b"),
        lambda: down.read_chunks("a/b"),
        down.ping,
    ):
        with pytest.raises(StorageUnavailable) as unavailable:
            call()
        # The job runner's TRANSIENT_ERRORS retries a ConnectionError.
        assert isinstance(unavailable.value, ConnectionError)
