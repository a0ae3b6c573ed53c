"""The local object store: one file per key under a root directory (``Settings.objects_dir``).

Writes are atomic (a temporary file in the same directory, fsynced, then ``os.replace``), so a reader
sees the old object or the new one, never a torn one, even across a crash. A key maps to a path only
after it passed the key grammar (``server.storage.keys.validate_key``: no ``..``, no leading ``/``,
nothing but ``[A-Za-z0-9._/-]``), and the resolved path is checked to lie under the root, so neither a
crafted key nor a symlink planted inside the root can reach a file outside it.

The content type of each object is kept beside it in ``<name>~meta``. ``~`` is outside the key
grammar, so no key can name a metadata or temporary file.
"""

from __future__ import annotations

import mimetypes
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path

from server.config.sections import PhotoLimits
from server.errors import Forbidden, NotFound, PayloadTooLarge, StorageUnavailable
from server.storage.keys import validate_key
from server.storage.port import ObjectInfo, PresignedRequest, check_expires
from server.storage.signing import UrlSigner

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_META_SUFFIX = "~meta"
_TMP_SUFFIX = "~tmp"
_SEALED_SUFFIX = "~sealed"
_CONTENT_TYPE = re.compile(r"[\x20-\x7e]{1,255}")


def _check_content_type(content_type: str) -> str:
    if not isinstance(content_type, str) or _CONTENT_TYPE.fullmatch(content_type) is None:
        raise ValueError(f"content_type must be printable ASCII, got {content_type!r}")
    return content_type


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            # Without fsync a crash right after the rename can leave an empty file under the new name.
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _seal_path(path: Path) -> Path:
    return path.with_name(path.name + _SEALED_SUFFIX)


def _sealed(path: Path) -> bool:
    return _seal_path(path).exists()


class ObjectWriter:
    """One object being received in chunks; becomes visible only on :meth:`commit`.

    The size limit is enforced on every chunk, so an oversized upload is refused after at most
    ``max_bytes`` + one chunk have been written to disk, and the partial file is removed.
    """

    def __init__(
        self, path: Path, key: str, content_type: str, max_bytes: int | None, *, refuse_sealed: bool = False
    ) -> None:
        self.key = key
        self._refuse_sealed = refuse_sealed
        self._path = path
        self._content_type = content_type
        self._max_bytes = max_bytes
        self.size = 0
        self._tmp: Path | None = None
        self._committed: ObjectInfo | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)
        except OSError as e:
            raise StorageUnavailable(f"could not start writing {key}: {e.strerror}") from e
        self._tmp = Path(tmp)
        self._handle = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        """Append ``chunk``; raises ``PayloadTooLarge`` (and discards the upload) past the limit."""
        if self._tmp is None:
            raise RuntimeError(f"upload of {self.key} is already finished")
        self.size += len(chunk)
        if self._max_bytes is not None and self.size > self._max_bytes:
            self.abort()
            raise PayloadTooLarge(f"object {self.key} exceeds the limit of {self._max_bytes} bytes")
        try:
            self._handle.write(chunk)
        except OSError as e:
            self.abort()
            raise StorageUnavailable(f"could not write {self.key}: {e.strerror}") from e

    def commit(self) -> ObjectInfo:
        """Make the object visible under its key, atomically, with its content type (idempotent)."""
        if self._committed is not None:
            return self._committed
        if self._tmp is None:
            raise RuntimeError(f"upload of {self.key} was aborted")
        if self._refuse_sealed and _sealed(self._path):
            # Sealed while this upload was streaming (confirm-upload or cancel came first).
            self.abort()
            raise Forbidden(f"uploads to {self.key} are closed")
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            # Metadata first: until the data rename, a reader still sees the previous object (or none).
            _write_atomically(self._path.with_name(self._path.name + _META_SUFFIX), self._meta())
            os.replace(self._tmp, self._path)
        except OSError as e:
            self.abort()
            raise StorageUnavailable(f"could not store {self.key}: {e.strerror}") from e
        self._tmp = None
        self._committed = ObjectInfo(size=self.size, content_type=self._content_type)
        return self._committed

    def abort(self) -> None:
        """Discard what was written; safe to call more than once."""
        if self._tmp is None:
            return
        with suppress(OSError):
            self._handle.close()
        with suppress(FileNotFoundError):
            os.unlink(self._tmp)
        self._tmp = None

    def _meta(self) -> bytes:
        return self._content_type.encode("ascii")


class LocalObjectStore:
    """``ObjectStore`` on the local filesystem; presigned URLs point at the gateway's ``/objects``."""

    def __init__(
        self,
        root: Path,
        *,
        signer: UrlSigner,
        public_base_url: str,
        max_upload_bytes: int = PhotoLimits.max_upload_bytes,
    ) -> None:
        if max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes must be >= 1, got {max_upload_bytes}")
        # abspath, not resolve(): it touches no disk, and the root need not exist yet.
        self._root = Path(os.path.abspath(root))
        self.signer = signer
        self._base_url = public_base_url.rstrip("/")
        self._max_upload_bytes = max_upload_bytes

    @property
    def root(self) -> Path:
        return self._root

    @property
    def max_upload_bytes(self) -> int:
        return self._max_upload_bytes

    def ensure_root(self) -> None:
        """Create the root directory (start-up step of the composition root)."""
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageUnavailable(f"cannot create the object directory {self._root}: {e.strerror}") from e

    def path_for(self, key: str) -> Path:
        """The file that holds ``key``; ``ValueError`` for a bad key or one that would leave the root."""
        validate_key(key)
        path = self._root / key
        real_root = os.path.realpath(self._root)
        real = os.path.realpath(path)
        if not real.startswith(real_root + os.sep):
            raise ValueError(f"object key {key!r} resolves outside the object directory")
        return path

    @contextmanager
    def open_writer(
        self, key: str, *, content_type: str, max_bytes: int | None = None, client_upload: bool = False
    ) -> Iterator[ObjectWriter]:
        """Receive an object in chunks: committed when the block ends normally, discarded otherwise.

        ``client_upload``: a presigned PUT, refused (``Forbidden``) once the key is sealed, checked
        before the first byte and again at commit."""
        path = self.path_for(key)
        if client_upload and _sealed(path):
            raise Forbidden(f"uploads to {key} are closed")
        writer = ObjectWriter(path, key, _check_content_type(content_type), max_bytes, refuse_sealed=client_upload)
        try:
            yield writer
        except BaseException:
            writer.abort()
            raise
        writer.commit()

    def put(self, key: str, data: bytes, *, content_type: str) -> None:
        with self.open_writer(key, content_type=content_type) as writer:
            writer.write(data)

    def get(self, key: str, *, max_bytes: int | None = None) -> bytes:
        path = self.path_for(key)
        try:
            with path.open("rb") as f:
                if max_bytes is None:
                    return f.read()
                # Read one byte past the limit instead of trusting a stat that a writer may outdate.
                data = f.read(max_bytes + 1)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as e:
            raise NotFound(f"object {key} does not exist") from e
        except OSError as e:
            raise StorageUnavailable(f"could not read {key}: {e.strerror}") from e
        if len(data) > max_bytes:
            raise PayloadTooLarge(f"object {key} exceeds the limit of {max_bytes} bytes")
        return data

    def head(self, key: str) -> ObjectInfo | None:
        path = self.path_for(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise StorageUnavailable(f"could not inspect {key}: {e.strerror}") from e
        if not path.is_file():
            return None
        return ObjectInfo(size=stat.st_size, content_type=self._content_type_of(path))

    def _content_type_of(self, path: Path) -> str:
        try:
            return path.with_name(path.name + _META_SUFFIX).read_text("ascii").strip()
        except (OSError, UnicodeDecodeError):
            # Written before metadata existed, or a crash between the two renames: the name decides.
            return mimetypes.guess_type(path.name)[0] or DEFAULT_CONTENT_TYPE

    def delete(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink(missing_ok=True)
            path.with_name(path.name + _META_SUFFIX).unlink(missing_ok=True)
        except IsADirectoryError:
            return
        except OSError as e:
            raise StorageUnavailable(f"could not delete {key}: {e.strerror}") from e

    def seal(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            _seal_path(path).touch()
        except OSError as e:
            raise StorageUnavailable(f"could not seal {key}: {e.strerror}") from e

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise ValueError(f"a prefix is a folder ending with '/', got {prefix!r}")
        folder = self.path_for(prefix.rstrip("/"))
        if not folder.is_dir():
            return 0
        removed = 0
        try:
            for path in sorted(folder.rglob("*"), reverse=True):  # files before their folders
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()
                else:
                    if not path.name.endswith((_META_SUFFIX, _TMP_SUFFIX, _SEALED_SUFFIX)):
                        removed += 1  # an object; its metadata and seal files are not counted
                    path.unlink()
            folder.rmdir()
        except FileNotFoundError:
            pass  # removed meanwhile by another sweeper: what is left goes next time
        except OSError as e:
            raise StorageUnavailable(f"could not delete {prefix}: {e.strerror}") from e
        return removed

    def remove_stale_uploads(self, *, older_than_s: float) -> int:
        """Delete temporary files of uploads abandoned by a crash; returns how many were removed.

        An upload in progress touches its file with every chunk, so one idle for ``older_than_s``
        (choose well above the upload URL lifetime) is dead. For the periodic sweeper.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self._root.rglob(f"*{_TMP_SUFFIX}"):
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
            except OSError as e:
                raise StorageUnavailable(f"could not remove {path.name}: {e.strerror}") from e
        return removed

    def presign_put(self, key: str, *, content_type: str, expires_s: int) -> PresignedRequest:
        signed = self.signer.sign(
            self._base_url,
            method="PUT",
            key=key,
            expires_s=check_expires(expires_s),
            content_type=_check_content_type(content_type),
        )
        return PresignedRequest(
            url=signed.url,
            method="PUT",
            headers={"Content-Type": content_type},
            expires_at=datetime.fromtimestamp(signed.expires, UTC),
        )

    def presign_get(self, key: str, *, expires_s: int, filename: str | None = None) -> str:
        return self.signer.sign(
            self._base_url, method="GET", key=key, expires_s=check_expires(expires_s), filename=filename
        ).url

    def check(self) -> None:
        if not self._root.is_dir():
            raise StorageUnavailable(f"the object directory {self._root} does not exist")
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"the object directory {self._root} is not writable")
        try:
            free = shutil.disk_usage(self._root).free
        except OSError as e:
            raise StorageUnavailable(f"cannot inspect the object directory: {e.strerror}") from e
        # A disk that cannot take one more upload is down for this service's purposes.
        if free < self._max_upload_bytes:
            raise StorageUnavailable(f"only {free} bytes free under {self._root}")
