"""The Jupyter server extension: the app, REST/SSE handlers, the MCP bridge.

The only place where tornado and jupyter_server handlers live; everything here is a thin
adapter over :class:`jupyter_exec_sessions.service.ContainerService`.
"""
