"""The S3-compatible object store (AWS S3, Cloudflare R2, MinIO, ...) through boto3.

Presigned URLs are real SigV4 URLs that the client uses against the store directly. The upload size
limit: a presigned PUT cannot cap the body size (only a presigned POST policy can), so the store may
accept an oversized object; ``server.storage.port.verify_upload`` catches it from ``head()`` at
``confirm-upload``, before anything reads it, and ``get(max_bytes=...)`` never reads past the limit.

Every botocore error is translated here: a missing key is ``NotFound``; anything else is
``StorageUnavailable`` (chained with ``from e``), so no boto type leaves this module.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from server.config import Settings
from server.config.sections import PhotoLimits
from server.errors import NotFound, PayloadTooLarge, StorageUnavailable
from server.storage.keys import validate_filename, validate_key
from server.storage.port import ObjectInfo, PresignedRequest, check_expires, content_disposition

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})
_READ_CHUNK_BYTES = 1024 * 1024


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


class S3ObjectStore:
    """``ObjectStore`` over one bucket of an S3-compatible service."""

    def __init__(
        self,
        *,
        bucket: str,
        region: str = "us-east-1",
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        max_upload_bytes: int = PhotoLimits.max_upload_bytes,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
    ) -> None:
        if max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
        self._bucket = bucket
        self._region = region
        self._max_upload_bytes = max_upload_bytes
        config = Config(
            signature_version="s3v4",
            # Path-style for custom endpoints: MinIO and local servers have no per-bucket host names.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
        )
        # An explicit session: credentials come from these arguments (or boto3's default chain when
        # they are None), never from state another part of the process set on the default session.
        session = boto3.session.Session(
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name=region,
        )
        self._client: S3Client = session.client("s3", endpoint_url=endpoint_url, config=config)

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        return cls(
            bucket=settings.s3.bucket,
            region=settings.s3.region,
            endpoint_url=settings.s3.endpoint_url,
            access_key_id=settings.s3.access_key_id,
            secret_access_key=settings.s3.secret_access_key,
            max_upload_bytes=settings.photos.max_upload_bytes,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def max_upload_bytes(self) -> int:
        return self._max_upload_bytes

    def ensure_bucket(self) -> None:
        """Create the bucket when it does not exist (start-up step of the composition root)."""
        try:
            self._client.head_bucket(Bucket=self._bucket)
            return
        except ClientError as e:
            if _code(e) not in _MISSING_CODES:
                raise StorageUnavailable(f"cannot reach bucket {self._bucket}: {_code(e)}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"cannot reach the object store: {e}") from e
        try:
            if self._region == "us-east-1":
                self._client.create_bucket(Bucket=self._bucket)
            else:
                self._client.create_bucket(
                    Bucket=self._bucket,
                    CreateBucketConfiguration={"LocationConstraint": self._region},  # type: ignore[typeddict-item]
                )
        except ClientError as e:
            # Another instance may have created it between our check and our create.
            if _code(e) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StorageUnavailable(f"cannot create bucket {self._bucket}: {_code(e)}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"cannot create bucket {self._bucket}: {e}") from e

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        validate_key(key)
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as e:
            raise StorageUnavailable(f"could not store {key}: {e}") from e

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        validate_key(key)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                if max_bytes is None:
                    return body.read()
                if response.get("ContentLength", 0) > max_bytes:
                    raise PayloadTooLarge(f"object {key} exceeds the limit of {max_bytes} bytes")
                # Bounded even if the length header lied: never hold more than the limit + 1 chunk.
                parts: list[bytes] = []
                size = 0
                while chunk := body.read(_READ_CHUNK_BYTES):
                    size += len(chunk)
                    if size > max_bytes:
                        raise PayloadTooLarge(f"object {key} exceeds the limit of {max_bytes} bytes")
                    parts.append(chunk)
                return b"".join(parts)
            finally:
                body.close()
        except ClientError as e:
            if _code(e) in _MISSING_CODES:
                raise NotFound(f"object {key} does not exist") from e
            raise StorageUnavailable(f"could not read {key}: {_code(e)}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"could not read {key}: {e}") from e

    def head(self, key: str) -> ObjectInfo | None:
        validate_key(key)
        try:
            response = self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as e:
            if _code(e) in _MISSING_CODES:
                return None
            raise StorageUnavailable(f"could not inspect {key}: {_code(e)}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"could not inspect {key}: {e}") from e
        return ObjectInfo(
            size=int(response.get("ContentLength", 0)),
            content_type=response.get("ContentType") or "application/octet-stream",
        )

    def delete(self, key: str) -> None:
        validate_key(key)
        try:
            self._client.delete_object(Bucket=self._bucket, Key=key)
        except ClientError as e:
            if _code(e) in _MISSING_CODES:
                return
            raise StorageUnavailable(f"could not delete {key}: {_code(e)}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"could not delete {key}: {e}") from e

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"a prefix is a folder ending with '/', got {prefix!r}")
        validate_key(prefix.rstrip("/"))
        removed = 0
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix)
            for page in pages:
                batch: list[ObjectIdentifierTypeDef] = [
                    {"Key": o["Key"]} for o in page.get("Contents", []) if "Key" in o
                ]
                if batch:  # at most 1,000 per page, DeleteObjects' own limit
                    self._client.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})
                    removed += len(batch)
        except (ClientError, BotoCoreError) as e:
            raise StorageUnavailable(f"could not delete {prefix}: {e}") from e
        return removed

    def seal(self, key: str) -> None:
        """Nothing to do: a SigV4 presigned URL cannot be revoked before it expires. The sha256
        pinned at confirm-upload makes a worker refuse whatever such a URL writes afterwards."""
        validate_key(key)

    def presign_put(self, key: str, *, content_type: str, expires_s: int) -> PresignedRequest:
        validate_key(key)
        check_expires(expires_s)
        # Taken before signing, so the reported expiry is never later than the real one.
        signed_at = datetime.now(UTC)
        try:
            url = self._client.generate_presigned_url(
                "put_object",
                # ContentType in Params makes Content-Type a signed header: the client must send it.
                Params={"Bucket": self._bucket, "Key": key, "ContentType": content_type},
                ExpiresIn=expires_s,
                HttpMethod="PUT",
            )
        except (ClientError, BotoCoreError) as e:
            raise StorageUnavailable(f"could not sign an upload URL for {key}: {e}") from e
        return PresignedRequest(
            url=url,
            method="PUT",
            headers={"Content-Type": content_type},
            expires_at=(signed_at + timedelta(seconds=expires_s)).replace(microsecond=0),
        )

    def presign_get(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        validate_key(key)
        check_expires(expires_s)
        params = {"Bucket": self._bucket, "Key": key}
        if filename is not None:
            validate_filename(filename)
            # Signed into the URL: the store answers with this Content-Disposition.
            params["ResponseContentDisposition"] = content_disposition(filename)
        try:
            return self._client.generate_presigned_url(
                "get_object",
                Params=params,
                ExpiresIn=expires_s,
                HttpMethod="GET",
            )
        except (ClientError, BotoCoreError) as e:
            raise StorageUnavailable(f"could not sign a download URL for {key}: {e}") from e

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except ClientError as e:
            raise StorageUnavailable(f"bucket {self._bucket} is not available: {_code(e)}") from e
        except BotoCoreError as e:
            raise StorageUnavailable(f"the object store does not answer: {e}") from e
