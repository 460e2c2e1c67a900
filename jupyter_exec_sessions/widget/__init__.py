"""``SessionMonitor``: a live view of containers, executions and session reuse (an anywidget).

``widget.monitor`` is the widget and server discovery, ``widget.feed`` the background follower
of the events feed, ``widget.state`` the pure reducer from events to rows; ``static/`` holds the
plain-ESM front end.
"""

from __future__ import annotations

from .monitor import ServerConnection, SessionMonitor, discover_server

__all__ = ["ServerConnection", "SessionMonitor", "discover_server"]
