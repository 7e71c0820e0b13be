"""`s3://bucket/prefix`: objects in any S3-compatible store, through boto3.

Configuration is boto3's own: it reads `AWS_ENDPOINT_URL` (MinIO, Ceph, moto...),
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_DEFAULT_REGION` from the environment
(or `~/.aws`, or an instance role); nothing here reads or logs a secret. Uploads use the
managed transfer (multipart above a threshold, parts in parallel), reads a ranged
`get_object` streamed in chunks, so no object is ever held whole in memory. S3 errors become
the typed errors of `app.storage.errors`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from app.storage.base import CHUNK_BYTES, ObjectStore, check_key, check_prefix
from app.storage.errors import ObjectMissing, StorageError, StorageUnavailable

T = TypeVar("T")

MULTIPART_THRESHOLD = 16 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "ServiceUnavailable",
    "InternalError",
    "OperationAborted",
}
"""Error codes worth a retry later, whatever the HTTP status (5xx and 429 are as well)."""
_UNANSWERED = (BotoConnectionError, HTTPClientError, IncompleteReadError)
"""No answer: refused, reset, timed out (connect or read), cut off midway."""
# At DEBUG, botocore logs whole signed requests; the service's DEBUG must not include them.
for _name in ("boto3", "botocore", "s3transfer"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunk: int = MULTIPART_CHUNK,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunk,
            use_threads=True,
        )
        self._client: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store({self.url})"

    @property
    def client(self) -> Any:
        """One client per store (boto3 clients are thread-safe; sessions are not)."""
        with self._lock:
            if self._client is None:
                endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
                    "AWS_ENDPOINT_URL"
                )
                config = Config(
                    connect_timeout=5,
                    read_timeout=60,
                    retries={"mode": "standard", "max_attempts": 4},
                    # S3-compatible servers behind a custom endpoint rarely resolve
                    # bucket.host names; AWS itself takes either style.
                    s3={"addressing_style": "path" if endpoint else "auto"},
                )
                self._client = boto3.session.Session().client("s3", config=config)
            return self._client

    def _name(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    # ------------------------------------------------------------------------- writes

    def put_file(self, key: str, source: Path, content_type: str, *, move: bool = False) -> None:
        name = self._name(key)
        _call(
            key,
            lambda: self.client.upload_file(
                str(source),
                self.bucket,
                name,
                ExtraArgs={"ContentType": content_type},
                Config=self.transfer,
            ),
        )

    def delete(self, key: str) -> None:
        name = self._name(key)
        _call(key, lambda: self.client.delete_object(Bucket=self.bucket, Key=name))

    def delete_prefix(self, prefix: str) -> int:
        name = self._name(check_prefix(prefix)[:-1]) + "/"
        removed = 0
        paginator = self.client.get_paginator("list_objects_v2")
        pages = _call(prefix, lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=name)))
        for page in pages:
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if not keys:
                continue
            answer = _call(prefix, partial(self._delete_batch, keys))
            errors = answer.get("Errors") or []
            if errors:
                raise StorageError(f"could not delete {len(errors)} object(s) under {prefix!r}")
            removed += len(keys)
        return removed

    def _delete_batch(self, keys: list[dict[str, str]]) -> Any:
        """One DeleteObjects call (S3 takes at most 1,000 keys, a listing page's size)."""
        return self.client.delete_objects(
            Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True}
        )

    # ------------------------------------------------------------------------- reads

    def read_chunks(
        self, key: str, *, start: int = 0, length: int | None = None, chunk: int = CHUNK_BYTES
    ) -> Iterator[bytes]:
        name = self._name(key)
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": name}
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            args["Range"] = f"bytes={start}-{end}"
        if length == 0:
            return iter(())
        body = _call(key, lambda: self.client.get_object(**args))["Body"]
        return _stream(key, body, chunk)

    def download(self, key: str, dest: Path) -> None:
        name = self._name(key)
        _call(
            key,
            lambda: self.client.download_file(self.bucket, name, str(dest), Config=self.transfer),
        )

    def size(self, key: str) -> int:
        name = self._name(key)
        head = _call(key, lambda: self.client.head_object(Bucket=self.bucket, Key=name))
        return int(head["ContentLength"])

    def ping(self) -> str:
        try:
            _call("", lambda: self.client.head_bucket(Bucket=self.bucket))
        except ObjectMissing:
            raise StorageError(f"bucket {self.bucket!r} does not exist") from None
        return self.url


def _stream(key: str, body: Any, chunk: int) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(chunk)
    except (*_UNANSWERED, ReadTimeoutError) as exc:
        raise StorageUnavailable(f"reading {key!r} failed: {exc}") from exc
    finally:
        body.close()


def _call(key: str, fn: Callable[[], T]) -> T:
    """Run one S3 call, its errors mapped to ours."""
    try:
        return fn()
    except ClientError as exc:
        raise _mapped(key, exc) from exc
    except S3UploadFailedError as exc:
        # The transfer manager raises it while handling the ClientError: judge that one.
        inner = exc.__cause__ or exc.__context__
        if isinstance(inner, ClientError):
            raise _mapped(key, inner) from exc
        if isinstance(inner, _UNANSWERED):
            raise StorageUnavailable(f"the object store did not answer: {inner}") from exc
        text = str(exc)
        transient = any(code in text for code in _TRANSIENT) or "(5" in text
        kind = StorageUnavailable if transient else StorageError
        raise kind(f"upload of {key!r} failed: {text}") from exc
    except _UNANSWERED as exc:
        raise StorageUnavailable(f"the object store did not answer: {exc}") from exc
    except BotoCoreError as exc:
        raise StorageError(f"storage call failed: {exc}") from exc


def _mapped(key: str, exc: ClientError) -> StorageError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code in _MISSING or (status == 404 and code != "NoSuchBucket"):
        return ObjectMissing(key)
    if code in _TRANSIENT or status >= 500 or status == 429:
        return StorageUnavailable(f"the object store is unavailable ({code or status})")
    return StorageError(f"the object store refused the request: {code or status}")
