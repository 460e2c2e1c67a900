"""REST handlers of the containers and files API, and the route table.

Thin async verbs over ``ContainerService``; every verb is ``@web.authenticated`` and
``@authorized``. Errors map to OpenAI bodies in ``extension.base``; executions, interrupt,
resolutions and the events feed are in ``extension.streaming``.
"""

from __future__ import annotations

import json
import re
from typing import cast, get_args

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from tornado import web

from .._contract import API_PATH, conversation_container_name
from ..errors import InvalidRequestError, PayloadTooLargeError
from ..models import (
    AddContainerFileRequest,
    ConversationContainerObject,
    ConversationEnded,
    ConversationRequest,
    CreateContainerRequest,
    FilePurpose,
)
from .base import (
    ExecSessionsHandler,
    error_body,
    openai_errors,
    owner_of,
)
from .body import MULTIPART_OVERHEAD
from .openapi import build_openapi
from .streaming import (
    EventsHandler,
    ExecutionHandler,
    ExecutionsHandler,
    InterruptHandler,
    ResolutionsHandler,
)

__all__ = ["ROUTES", "default_handlers", "error_body", "owner_of", "route_pattern"]


class ContainersHandler(ExecSessionsHandler):
    """``/containers``: create and list."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self) -> None:
        """Create a container."""
        request = self.parse(CreateContainerRequest, self.json_body())
        container = await self.service.create_container(self.owner, request)
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

    def body_limit(self) -> int:
        """An upload may be ``max_upload_bytes`` plus its multipart framing."""
        if self.request.method == "POST":
            return self.service.config.max_upload_bytes + MULTIPART_OVERHEAD
        return super().body_limit()

    def body_too_large(self, size: int | None, limit: int) -> Exception:
        """A 413 naming ``max_upload_bytes``."""
        if self.request.method != "POST":
            return super().body_too_large(size, limit)
        got = f"{size} bytes" if size is not None else "larger than the limit"
        return PayloadTooLargeError(
            f"The upload is {got}; the limit is {self.service.config.max_upload_bytes} bytes"
            " (max_upload_bytes).",
            param="file",
        )

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Upload a file (multipart part ``file``), or copy a stored file in (JSON ``file_id``)."""
        ctype = self.request.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            request = self.parse(AddContainerFileRequest, self.json_body())
            copied = await self.service.stored_files.copy_into(
                self.owner, container_id, request.file_id
            )
            self.send_model(copied)
            return
        fields, files = self.parse_form()
        parts = files.get("file")
        if not parts:
            raise InvalidRequestError(
                "Missing required parameter: 'file' (a multipart/form-data part).",
                param="file",
            )
        part = parts[0]
        # Raw values: tornado's get_body_argument would silently drop control characters.
        raw_path = fields.get("path")
        try:
            filename = raw_path[0].decode("utf-8") if raw_path else part.filename
        except UnicodeDecodeError:
            raise InvalidRequestError(
                "Invalid 'path': it is not UTF-8 text.", param="path"
            ) from None
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
        self.finish(data, set_content_type="application/octet-stream")


class StoredFilesHandler(ExecSessionsHandler):
    """``/files``: the Files API, upload (multipart ``file`` + ``purpose``) and list."""

    def body_limit(self) -> int:
        """An upload may be ``max_upload_bytes`` plus its multipart framing."""
        if self.request.method == "POST":
            return self.service.config.max_upload_bytes + MULTIPART_OVERHEAD
        return super().body_limit()

    def body_too_large(self, size: int | None, limit: int) -> Exception:
        """A 413 naming ``max_upload_bytes``."""
        got = f"{size} bytes" if size is not None else "larger than the limit"
        return PayloadTooLargeError(
            f"The upload is {got}; the limit is {self.service.config.max_upload_bytes} bytes"
            " (max_upload_bytes).",
            param="file",
        )

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self) -> None:
        """Store a file for later use by id."""
        fields, files = self.parse_form()
        parts = files.get("file")
        if not parts:
            raise InvalidRequestError(
                "Missing required parameter: 'file' (a multipart/form-data part).",
                param="file",
            )
        raw = fields.get("purpose")
        purpose = raw[0].decode("utf-8", "replace") if raw else None
        if purpose not in get_args(FilePurpose):
            raise InvalidRequestError(
                f"Invalid 'purpose': expected one of {', '.join(get_args(FilePurpose))}.",
                param="purpose",
            )
        part = parts[0]
        stored = await self.service.stored_files.create(
            self.owner, part.filename or "file", part.body, cast(FilePurpose, purpose)
        )
        self.send_model(stored)

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self) -> None:
        """List the caller's stored files."""
        after, limit, order = self.page_args()
        purpose = self.get_query_argument("purpose", None)
        self.send_model(
            self.service.stored_files.list(
                self.owner, after=after, limit=limit, order=order, purpose=purpose
            )
        )


class StoredFileHandler(ExecSessionsHandler):
    """``/files/{file_id}``: retrieve and delete a stored file."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, file_id: str) -> None:
        """Retrieve a stored file object."""
        self.send_model(self.service.stored_files.retrieve(self.owner, file_id))

    @web.authenticated
    @authorized
    @openai_errors
    async def delete(self, file_id: str) -> None:
        """Delete a stored file."""
        self.send_model(await self.service.stored_files.delete(self.owner, file_id))


class StoredFileContentHandler(ExecSessionsHandler):
    """``/files/{file_id}/content``: a stored file's bytes."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, file_id: str) -> None:
        """Download a stored file."""
        data = await self.service.stored_files.content(self.owner, file_id)
        self.finish(data, set_content_type="application/octet-stream")


class ConversationsHandler(ExecSessionsHandler):
    """``/conversations``: the durable conversation → implicit container bindings.

    What the in-server MCP endpoint keeps in the service, offered to MCP servers in other
    processes (the stdio server): every process of one conversation finds the same container.
    """

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self) -> None:
        """The key's running implicit container, made (or remade) on demand."""
        request = self.parse(ConversationRequest, self.json_body())
        name = request.name or conversation_container_name(request.key)
        bound = await self.service.conversations.container_for(self.owner, request.key, name)
        self.send_model(
            ConversationContainerObject(
                key=request.key,
                container_id=bound.container_id,
                replaced=bound.replaced,
                reason=bound.reason,
            )
        )

    @web.authenticated
    @authorized
    @openai_errors
    async def delete(self) -> None:
        """Forget ``?key=`` and expire its implicit container now."""
        key = self.get_query_argument("key", None)
        request = self.parse(ConversationRequest, {} if key is None else {"key": key})
        ended = self.service.conversations.end(self.owner, request.key)
        self.send_model(ConversationEnded(key=request.key, deleted=ended))


class NotFoundHandler(ExecSessionsHandler):
    """Any other path under the API: a 404 in the OpenAI shape."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        """Unknown route."""
        raise web.HTTPError(404, "Unknown route: /%s", path)

    post = delete = put = patch = get


class OpenAPIHandler(ExecSessionsHandler):
    """``/openapi.json``: the OpenAPI 3.1 document of this API."""

    _documents: dict[str, str] = {}  # noqa: RUF012  (a cache per base URL)

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The document, with ``servers`` pointing at this server's API base."""
        base = url_path_join(self.base_url, API_PATH)
        doc = self._documents.get(base)
        if doc is None:
            doc = self._documents[base] = json.dumps(build_openapi(base))
        self.set_header("Content-Type", "application/json")
        self.finish(doc)


#: The API's routes as OpenAPI path templates (relative to the API base), in matching order.
ROUTES: list[tuple[str, type[ExecSessionsHandler]]] = [
    ("/containers", ContainersHandler),
    ("/containers/{container_id}", ContainerHandler),
    ("/containers/{container_id}/files", FilesHandler),
    ("/containers/{container_id}/files/{file_id}/content", FileContentHandler),
    ("/containers/{container_id}/files/{file_id}", FileHandler),
    ("/containers/{container_id}/executions", ExecutionsHandler),
    ("/containers/{container_id}/executions/{execution_id}", ExecutionHandler),
    ("/containers/{container_id}/interrupt", InterruptHandler),
    ("/containers/{container_id}/resolutions", ResolutionsHandler),
    ("/files", StoredFilesHandler),
    ("/files/{file_id}/content", StoredFileContentHandler),
    ("/files/{file_id}", StoredFileHandler),
    ("/conversations", ConversationsHandler),
    ("/events", EventsHandler),
    ("/openapi.json", OpenAPIHandler),
]


def route_pattern(template: str) -> str:
    """The tornado pattern of an OpenAPI path template (``{name}`` → one path segment)."""
    parts = re.split(r"(\{[^}]+\})", template)
    return "".join("([^/]+)" if p.startswith("{") else re.escape(p) for p in parts)


default_handlers: list[tuple[str, type[ExecSessionsHandler]]] = [
    (rf"/{API_PATH}{route_pattern(template)}/?", handler) for template, handler in ROUTES
]
default_handlers.append((rf"/{API_PATH}/(.*)", NotFoundHandler))
