"""Where backups go: a local directory or an S3 prefix."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from data import aws
from data.backup.common import (
    CHUNK_BYTES,
    S3_CONTENT_TYPE,
    S3_SCHEME,
    S3_SSE,
    SHA256_METADATA_KEY,
    TEMP_PREFIX,
    BackupError,
    BackupTarget,
    RestoreError,
    _check_name,
    _fsync_dir,
    _fsync_file,
    is_backup_name,
)
from data.backup.snapshot import file_sha256

# --- targets -----------------------------------------------------------------------------------------------


class LocalTarget:
    """Backups in a local directory (created on first use); uploads land atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def put(self, local: Path, name: str) -> None:
        """Copy `local` into the directory as `name`, via a hidden partial file renamed into place."""
        _check_name(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = self.directory / f"{TEMP_PREFIX}{name}.partial"
        try:
            shutil.copyfile(local, partial)
            _fsync_file(partial)
            partial.replace(self.directory / name)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)

    def names(self) -> list[str]:
        """List our backup files in the directory, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if is_backup_name(p.name) and p.is_file())

    def fetch(self, name: str, local: Path) -> None:
        """Copy the file `name` from the directory to `local`."""
        source = self.directory / name
        if not source.is_file():
            raise RestoreError(f"no backup {source}")
        shutil.copyfile(source, local)

    def delete(self, name: str) -> None:
        """Delete the backup `name` (only ever one of ours)."""
        _check_name(name)
        (self.directory / name).unlink(missing_ok=True)

    def describe(self) -> str:
        """Name the directory."""
        return str(self.directory)


class S3Target:
    """Backups under an S3 prefix, encrypted at rest (SSE AES256), each object's sha256 in its metadata."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        if not bucket:
            raise ValueError("an S3 target needs a bucket")
        self._client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def key(self, name: str) -> str:
        """Return the object key of the backup `name`."""
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, local: Path, name: str) -> None:
        """Upload `local` as `name` with server-side encryption and its sha256 as metadata."""
        _check_name(name)
        digest = file_sha256(local)
        with _s3_errors(f"upload to {self.url(name)}"), Path(local).open("rb") as body:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self.key(name),
                Body=body,
                ServerSideEncryption=S3_SSE,
                ContentType=S3_CONTENT_TYPE,
                Metadata={SHA256_METADATA_KEY: digest},
            )

    def names(self) -> list[str]:
        """List our backups directly under the prefix, oldest first."""
        start = self.key("")
        found: list[str] = []
        with _s3_errors(f"list {self.describe()}"):
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                found.extend(
                    name for obj in page.get("Contents", []) if is_backup_name(name := obj["Key"][len(start) :])
                )
        return sorted(found)

    def fetch(self, name: str, local: Path) -> None:
        """Download `name` to `local` and check it against the sha256 recorded at upload, when there is one."""
        digest = hashlib.sha256()
        with _s3_errors(f"download {self.url(name)}"):
            response = self._client.get_object(Bucket=self.bucket, Key=self.key(name))
            with Path(local).open("wb") as out:
                for chunk in response["Body"].iter_chunks(CHUNK_BYTES):
                    digest.update(chunk)
                    out.write(chunk)
        expected = response.get("Metadata", {}).get(SHA256_METADATA_KEY)
        if expected and expected != digest.hexdigest():
            raise RestoreError(
                f"{self.url(name)} does not match the sha256 recorded at upload ({digest.hexdigest()} != {expected})"
            )

    def delete(self, name: str) -> None:
        """Delete the backup `name` (only ever one of ours)."""
        _check_name(name)
        with _s3_errors(f"delete {self.url(name)}"):
            self._client.delete_object(Bucket=self.bucket, Key=self.key(name))

    def describe(self) -> str:
        """Name the bucket and prefix as an s3:// URL."""
        return f"{S3_SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{S3_SCHEME}{self.bucket}"

    def url(self, name: str) -> str:
        """Return the s3:// URL of the backup `name`."""
        return f"{S3_SCHEME}{self.bucket}/{self.key(name)}"


@contextlib.contextmanager
def _s3_errors(what: str) -> Iterator[None]:
    """Turn the SDK's errors (HTTP, credentials, endpoints) into one-line `BackupError`s."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - only S3 targets need botocore

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise BackupError(f"S3 {what} failed: {exc}") from exc


def default_s3_client() -> Any:
    """Create a boto3 S3 client with the SDK's own region and credential chain."""
    with _s3_errors("client setup"):
        return aws.client("s3")


def parse_s3_url(url: str) -> tuple[str, str]:
    """Split `s3://bucket/rest` into bucket and rest (without surrounding slashes)."""
    if not url.startswith(S3_SCHEME):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, rest = url.removeprefix(S3_SCHEME).partition("/")
    if not bucket:
        raise ValueError(f"an S3 location needs a bucket, e.g. s3://my-bucket/tradebot, was {url!r}")
    return bucket, rest.strip("/")


def target_from_url(
    url: str, default_dir: Path, s3_client_factory: Callable[[], Any] = default_s3_client
) -> BackupTarget:
    """Return the target `url` names: "" the default directory, s3://bucket/prefix an S3 prefix, else a directory."""
    text = url.strip()
    if not text:
        return LocalTarget(default_dir)
    if text.startswith(S3_SCHEME):
        bucket, prefix = parse_s3_url(text)
        return S3Target(s3_client_factory(), bucket, prefix)
    return LocalTarget(Path(text).expanduser())
