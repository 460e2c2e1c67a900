"""The Files API: files a user uploads once and copies into containers by id.

``POST /files`` stores the bytes under ``<data_dir>/files/<id>`` (the server's own data
directory, never a container's) and a row in the registry, owned by the uploading user;
another user's id is a 404. ``containers.create(file_ids=[...])`` and
``containers.files.create(container_id, file_id=...)`` copy a stored file into the container
through its kernel, at ``/mnt/data/<filename>``, as an uploaded (``source: user``) file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import time
from collections.abc import Sequence
from pathlib import Path

from .._contract import new_id
from ..engine.paths import safe_relpath
from ..errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from ..models import ContainerFile, FileDeleted, FileList, FileObject, FilePurpose
from .config import ServiceConfig
from .containers import Containers
from .files import Files
from .kernels import ContainerKernels
from .store import Store, StoredFileRow

__all__ = ["StoredFileNotFoundError", "StoredFiles"]


class StoredFileNotFoundError(NotFoundError):
    """No file with this id belongs to the caller."""

    code = "file_not_found"

    def __init__(self, file_id: str, *, param: str | None = None) -> None:
        super().__init__(f"No file found with id '{file_id}'.", param=param)


def _object(row: StoredFileRow) -> FileObject:
    return FileObject(
        id=row.id,
        bytes=row.bytes,
        created_at=row.created_at,
        filename=row.filename,
        purpose=row.purpose,
    )


class StoredFiles:
    """Per-user stored files, and copying them into containers."""

    def __init__(
        self,
        config: ServiceConfig,
        store: Store,
        containers: Containers,
        kernels: ContainerKernels,
        files: Files,
    ) -> None:
        self.config = config
        self.store = store
        self.containers = containers
        self.kernels = kernels
        self.files = files
        self.dir = config.data_dir / "files"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _blob(self, file_id: str) -> Path:
        return self.dir / file_id

    def _row(self, owner: str, file_id: str, param: str | None = None) -> StoredFileRow:
        row = self.store.get_stored_file(owner, file_id)
        if row is None:
            raise StoredFileNotFoundError(file_id, param=param)
        return row

    async def create(
        self, owner: str, filename: str, data: bytes, purpose: FilePurpose
    ) -> FileObject:
        """Store an uploaded file for its owner."""
        if len(data) > self.config.max_upload_bytes:
            raise PayloadTooLargeError(
                f"The file is {len(data)} bytes; the limit is {self.config.max_upload_bytes}"
                " bytes (max_upload_bytes).",
                param="file",
            )
        name = posixpath.basename(filename.replace("\\", "/"))
        safe_relpath(name, param="file")  # a plain, safe file name
        file_id = new_id("file-")
        blob = self._blob(file_id)
        await asyncio.to_thread(blob.write_bytes, data)
        try:
            row = self.store.insert_stored_file(
                id=file_id,
                owner=owner,
                filename=name,
                size=len(data),
                purpose=purpose,
                now=time.time(),
            )
        except BaseException:
            with contextlib.suppress(OSError):
                blob.unlink()
            raise
        return _object(row)

    def retrieve(self, owner: str, file_id: str) -> FileObject:
        """One of the owner's stored files."""
        return _object(self._row(owner, file_id))

    def list(
        self, owner: str, *, after: str | None, limit: int, order: str, purpose: str | None
    ) -> FileList:
        """A cursor page of the owner's stored files."""
        rows, has_more = self.store.list_stored_files(
            owner, after=after, limit=limit, order=order, purpose=purpose
        )
        data = [_object(r) for r in rows]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )

    async def content(self, owner: str, file_id: str) -> bytes:
        """The stored bytes."""
        self._row(owner, file_id)
        try:
            return await asyncio.to_thread(self._blob(file_id).read_bytes)
        except FileNotFoundError:
            raise StoredFileNotFoundError(file_id) from None

    async def delete(self, owner: str, file_id: str) -> FileDeleted:
        """Forget a stored file and remove its bytes (copies in containers stay)."""
        self._row(owner, file_id)
        self.store.delete_stored_file(owner, file_id)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.remove, self._blob(file_id))
        return FileDeleted(id=file_id)

    def check_ids(self, owner: str, file_ids: Sequence[str], param: str = "file_ids") -> None:
        """Every id names one of the owner's stored files (else a 404 naming ``param``)."""
        if len(file_ids) > 100:
            raise InvalidRequestError(
                f"Invalid '{param}': {len(file_ids)} ids; at most 100.", param=param
            )
        for file_id in file_ids:
            self._row(owner, file_id, param=param)

    async def copy_into(
        self, owner: str, container_id: str, file_id: str, *, param: str = "file_id"
    ) -> ContainerFile:
        """Copy a stored file into the container (through its kernel) as ``<filename>``."""
        row = self._row(owner, file_id, param=param)
        data = await self.content(owner, file_id)
        container, slot = self.containers.usable(owner, container_id)
        async with self.kernels.session(container, slot) as session:
            await session.write_file(row.filename, data)
        return self.files.register_upload(container, row.filename, len(data))
