"""REST handlers of the containers and files API, and the route table.

Thin async verbs over ``ContainerService``; every verb is ``@web.authenticated`` and
``@authorized``. Errors map to OpenAI bodies in ``extension.base``; executions, interrupt,
resolutions and the events feed are in ``extension.streaming``.
"""

from __future__ import annotations

from jupyter_server.auth.decorator import authorized
from tornado import web

from .._contract import API_PATH
from ..errors import InvalidRequestError, PayloadTooLargeError
from ..models import CreateContainerRequest
from .base import (
    ExecSessionsHandler,
    error_body,
    openai_errors,
    owner_of,
)
from .streaming import (
    EventsHandler,
    ExecutionHandler,
    ExecutionsHandler,
    InterruptHandler,
    ResolutionsHandler,
)

__all__ = ["default_handlers", "error_body", "owner_of"]


class ContainersHandler(ExecSessionsHandler):
    """``/containers``: create and list."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self) -> None:
        """Create a container."""
        request = self.parse(CreateContainerRequest, self.json_body())
        container = await self.service.containers.create(self.owner, request)
        self.set_header("Location", self.request.path.rstrip("/") + "/" + container.id)
        self.send_model(container)

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self) -> None:
        """List the caller's containers."""
        after, limit, order = self.page_args()
        name = self.get_query_argument("name", None)
        page = self.service.containers.list(
            self.owner, after=after, limit=limit, order=order, name=name
        )
        self.send_model(page)


class ContainerHandler(ExecSessionsHandler):
    """``/containers/{id}``: retrieve and delete."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str) -> None:
        """Retrieve a container."""
        self.send_model(self.service.containers.retrieve(self.owner, container_id))

    @web.authenticated
    @authorized
    @openai_errors
    async def delete(self, container_id: str) -> None:
        """Delete a container."""
        self.send_model(await self.service.containers.delete(self.owner, container_id))


class FilesHandler(ExecSessionsHandler):
    """``/containers/{id}/files``: upload and list."""

    async def prepare(self) -> None:  # type: ignore[override]
        """Refuse oversized uploads before reading them."""
        length = int(self.request.headers.get("Content-Length", "0") or 0)
        limit = self.service.config.max_upload_bytes
        if self.request.method == "POST" and length > limit + 64 * 1024:
            self.send_exec_error(
                PayloadTooLargeError(
                    f"The upload is {length} bytes; the limit is {limit} bytes (max_upload_bytes).",
                    param="file",
                )
            )
            return
        await super().prepare()

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Upload a file (multipart part ``file``)."""
        parts = self.request.files.get("file")
        if not parts:
            ctype = self.request.headers.get("Content-Type", "")
            if ctype.startswith("application/json") and "file_id" in self.json_body():
                raise InvalidRequestError(
                    "file_id is not supported by this server: upload the file's bytes as"
                    " the multipart part 'file'.",
                    param="file_id",
                )
            raise InvalidRequestError(
                "Missing required parameter: 'file' (a multipart/form-data part).",
                param="file",
            )
        part = parts[0]
        # Raw values: tornado's get_body_argument would silently drop control characters.
        raw_path = self.request.body_arguments.get("path")
        filename = raw_path[0].decode("utf-8", "replace") if raw_path else part.filename
        f = await self.service.files.upload(self.owner, container_id, filename, part.body)
        self.send_model(f)

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str) -> None:
        """List the container's files as they are on disk."""
        after, limit, order = self.page_args()
        page = await self.service.files.list(
            self.owner, container_id, after=after, limit=limit, order=order
        )
        self.send_model(page)


class FileHandler(ExecSessionsHandler):
    """``/containers/{id}/files/{file_id}``: retrieve and delete."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str, file_id: str) -> None:
        """Retrieve a file object."""
        self.send_model(await self.service.files.retrieve(self.owner, container_id, file_id))

    @web.authenticated
    @authorized
    @openai_errors
    async def delete(self, container_id: str, file_id: str) -> None:
        """Delete a file."""
        self.send_model(await self.service.files.delete(self.owner, container_id, file_id))


class FileContentHandler(ExecSessionsHandler):
    """``/containers/{id}/files/{file_id}/content``: raw bytes."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str, file_id: str) -> None:
        """Download a file's bytes."""
        data = await self.service.files.content(self.owner, container_id, file_id)
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)


class NotFoundHandler(ExecSessionsHandler):
    """Any other path under the API: a 404 in the OpenAI shape."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        """Unknown route."""
        raise web.HTTPError(404, "Unknown route: /%s", path)

    post = delete = put = patch = get


_ID = r"([^/]+)"
default_handlers: list[tuple[str, type[ExecSessionsHandler]]] = [
    (rf"/{API_PATH}/containers/?", ContainersHandler),
    (rf"/{API_PATH}/containers/{_ID}/?", ContainerHandler),
    (rf"/{API_PATH}/containers/{_ID}/files/?", FilesHandler),
    (rf"/{API_PATH}/containers/{_ID}/files/{_ID}/content/?", FileContentHandler),
    (rf"/{API_PATH}/containers/{_ID}/files/{_ID}/?", FileHandler),
    (rf"/{API_PATH}/containers/{_ID}/executions/?", ExecutionsHandler),
    (rf"/{API_PATH}/containers/{_ID}/executions/{_ID}/?", ExecutionHandler),
    (rf"/{API_PATH}/containers/{_ID}/interrupt/?", InterruptHandler),
    (rf"/{API_PATH}/containers/{_ID}/resolutions/?", ResolutionsHandler),
    (rf"/{API_PATH}/events/?", EventsHandler),
    (rf"/{API_PATH}/(.*)", NotFoundHandler),
]
