"""Container files: upload, list (the real directory), retrieve, content, delete.

Every operation goes through the container's kernel (``KernelSession`` file helpers) under the
container's slot lock, so it works the same for remote kernels. The registry keeps ids,
sources and creation times; a listing first syncs it with the directory as it really is.
"""

from __future__ import annotations

import contextlib
import posixpath
import time

from .._contract import CONTAINER_ROOT, new_id
from ..engine.paths import safe_relpath
from ..errors import (
    ContainerFileNotFoundError,
    PayloadTooLargeError,
)
from ..models import ContainerFile, ContainerFileDeleted, ContainerFileList
from .config import ServiceConfig
from .containers import Containers
from .kernels import ContainerKernels
from .store import ContainerRow, FileRow, Store

__all__ = ["CONTAINER_ROOT", "Files", "container_path"]


def container_path(workdir: str, path: str | None) -> str | None:
    """A path inside the container directory as answers name it: ``/mnt/data/<relative>``.

    ``path`` is what the kernel reported (absolute under ``workdir``, or already relative).
    """
    if path is None:
        return None
    root = workdir.replace("\\", "/").rstrip("/") + "/"
    path = path.replace("\\", "/")
    rel = path[len(root) :] if path.startswith(root) else path.lstrip("/")
    if path.startswith(CONTAINER_ROOT + "/"):
        rel = path[len(CONTAINER_ROOT) + 1 :]
    return posixpath.join(CONTAINER_ROOT, rel)


class Files:
    """The files API of the service."""

    def __init__(
        self,
        config: ServiceConfig,
        store: Store,
        containers: Containers,
        kernels: ContainerKernels,
    ) -> None:
        self.config = config
        self.store = store
        self.containers = containers
        self.kernels = kernels
        # whether the last directory walk of a container stopped at its cap (in memory)
        self._capped: dict[str, bool] = {}

    def _file(self, row: ContainerRow, f: FileRow) -> ContainerFile:
        # The path the code sees, by OpenAI's convention; never the server's own layout.
        return ContainerFile(
            id=f.id,
            container_id=row.id,
            path=f"{CONTAINER_ROOT}/{f.path}",
            bytes=f.bytes,
            source=f.source,
            created_at=f.created_at,
        )

    async def upload(
        self, owner: str, container_id: str, filename: str, data: bytes
    ) -> ContainerFile:
        """Write an uploaded file into the container directory (through its kernel)."""
        relpath = safe_relpath(filename)
        if len(data) > self.config.max_upload_bytes:
            raise PayloadTooLargeError(
                f"The file is {len(data)} bytes; the limit is {self.config.max_upload_bytes}"
                " bytes (max_upload_bytes).",
                param="file",
            )
        row, slot = self.containers.usable(owner, container_id)
        async with self.kernels.session(row, slot) as session:
            await session.write_file(relpath, data)
        return self.register_upload(row, relpath, len(data))

    def register_upload(self, row: ContainerRow, relpath: str, size: int) -> ContainerFile:
        """Record a file the user put into the container (source ``user``)."""
        f = self.store.upsert_file(
            id=new_id("cfile_"),
            container_id=row.id,
            path=relpath,
            size=size,
            source="user",
            now=time.time(),
        )
        return self._file(row, f)

    async def sync(self, owner: str, container_id: str) -> tuple[ContainerRow, bool]:
        """Bring the file registry in line with the container's real directory.

        Returns the container and whether the directory walk stopped at its cap; a capped
        walk adds and updates what it saw and forgets nothing it did not reach.
        """
        row, slot = self.containers.usable(owner, container_id)
        async with self.kernels.session(row, slot) as session:
            stats, capped = await session.list_files()
        present = {s.path: s.bytes for s in stats}
        self.store.sync_files(
            row.id, present, lambda: new_id("cfile_"), time.time(), complete=not capped
        )
        self._capped[row.id] = capped
        return row, capped

    async def list(
        self, owner: str, container_id: str, *, after: str | None, limit: int, order: str
    ) -> ContainerFileList:
        """A cursor page of the container's files.

        The first page (no ``after``) looks at the directory as it is now; the following
        pages page through what that look registered, without walking the tree again.
        ``capped`` says the directory holds more files than one walk lists.
        """
        if after is None:
            row, capped = await self.sync(owner, container_id)
        else:
            row, _ = self.containers.usable(owner, container_id)
            capped = self._capped.get(row.id, False)
        files = self.store.files_of(row.id)
        if order == "desc":
            files.reverse()
        if after is not None:
            ids = [f.id for f in files]
            files = files[ids.index(after) + 1 :] if after in ids else []
        page = files[:limit]
        data = [self._file(row, f) for f in page]
        return ContainerFileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(files) > limit,
            capped=capped,
        )

    async def retrieve(self, owner: str, container_id: str, file_id: str) -> ContainerFile:
        """One file object, checked against the real file (no directory walk when known)."""
        row, slot = self.containers.usable(owner, container_id)
        f = self.store.get_file(row.id, file_id)
        if f is None:
            row, _ = await self.sync(owner, container_id)
            f = self.store.get_file(row.id, file_id)
            if f is None:
                raise ContainerFileNotFoundError(file_id)
            return self._file(row, f)
        async with self.kernels.session(row, slot) as session:
            stat = await session.stat_file(f.path)
        if stat is None:
            self.store.delete_file(row.id, file_id)
            raise ContainerFileNotFoundError(file_id)
        if stat.bytes != f.bytes:
            self.store.update_file_size(row.id, file_id, stat.bytes)
            f.bytes = stat.bytes
        return self._file(row, f)

    async def content(self, owner: str, container_id: str, file_id: str) -> bytes:
        """The file's bytes, read through the container's kernel."""
        row, slot = self.containers.usable(owner, container_id)
        f = self.store.get_file(row.id, file_id)
        if f is None:
            await self.sync(owner, container_id)
            f = self.store.get_file(row.id, file_id)
            if f is None:
                raise ContainerFileNotFoundError(file_id)
        async with self.kernels.session(row, slot) as session:
            try:
                return await session.read_file(f.path)
            except ContainerFileNotFoundError:
                self.store.delete_file(row.id, file_id)
                raise ContainerFileNotFoundError(file_id) from None

    async def delete(self, owner: str, container_id: str, file_id: str) -> ContainerFileDeleted:
        """Delete the file from the container directory and the registry."""
        row, slot = self.containers.usable(owner, container_id)
        f = self.store.get_file(row.id, file_id)
        if f is None:
            raise ContainerFileNotFoundError(file_id)
        async with self.kernels.session(row, slot) as session:
            with contextlib.suppress(ContainerFileNotFoundError):
                await session.delete_file(f.path)
        self.store.delete_file(row.id, file_id)
        return ContainerFileDeleted(id=file_id)
