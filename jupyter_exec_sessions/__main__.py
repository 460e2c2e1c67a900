"""Command line: ``jupyter-exec-sessions mcp …`` (stdio MCP server) and ``… gateway …``.

``mcp`` serves the two execution tools over stdio for MCP clients that spawn their servers; it
executes on a running Jupyter server with the extension, reached through the HTTP client::

    jupyter-exec-sessions mcp --url http://127.0.0.1:8888/ --token "$TOKEN"

``--url``/``--token`` default to ``JUPYTER_EXEC_SESSIONS_URL``/``JUPYTER_EXEC_SESSIONS_TOKEN``.
``gateway`` runs the reference Responses gateway (its options: ``gateway --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ._contract import ENV_TOKEN, ENV_URL

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-exec-sessions",
        description="Code-interpreter sessions on a Jupyter server.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mcp = commands.add_parser(
        "mcp",
        help="serve the MCP tools over stdio",
        description="Serve execute_python_code and execute_shell_commands over stdio, "
        "executing on a running Jupyter server with jupyter-exec-sessions.",
    )
    mcp.add_argument(
        "--url",
        default=os.environ.get(ENV_URL),
        help="the Jupyter server's base URL, e.g. http://127.0.0.1:8888/ "
        "(default: $JUPYTER_EXEC_SESSIONS_URL)",
    )
    mcp.add_argument(
        "--token",
        default=os.environ.get(ENV_TOKEN),
        help="the server's token (default: $JUPYTER_EXEC_SESSIONS_TOKEN)",
    )
    commands.add_parser(
        "gateway",
        help="run the reference Responses gateway",
        add_help=False,
        prefix_chars="\0",  # every argument goes to the gateway's own parser
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["gateway"]:
        from . import gateway  # lazy: Starlette/uvicorn only when needed

        result = gateway.main(args_list[1:])
        return int(result or 0)
    args = _parser().parse_args(args_list)
    if args.command == "mcp":
        if not args.url:
            _parser().error("mcp: --url (or JUPYTER_EXEC_SESSIONS_URL) is required")
        import anyio

        from jupyter_exec_sessions.mcp_server import run_stdio

        anyio.run(run_stdio, args.url, args.token)
        return 0
    return 2  # pragma: no cover - argparse enforces the choices


if __name__ == "__main__":
    sys.exit(main())
