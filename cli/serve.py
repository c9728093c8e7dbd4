"""`cockpit serve`: the same cockpit in a browser, through textual-serve (one cockpit process per browser tab).

Bound to 127.0.0.1 by default: from a laptop, `ssh -L 8000:127.0.0.1:8000 trainbox`, then open
http://127.0.0.1:8000. A wider address needs `--allow-remote`, and then every request must carry the
token (the printed URL has it; the page keeps it in a cookie for its websocket).
"""
from __future__ import annotations

import ipaddress
import secrets
import shlex
import sys

from core.errors import UserError
from core.runs import runs_dir

TOKEN_COOKIE = "cockpit_token"


def add_serve_command(sub) -> None:
    """Register `serve` on the CLI's subcommand table."""
    p = sub.add_parser("serve", help="serve the cockpit to a browser (textual-serve); localhost unless told")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="default: %(default)s")
    p.add_argument("--allow-remote", action="store_true", help="allow an address other than loopback; requests "
                                                                "then need the token")
    p.add_argument("--token", help="the token remote requests must carry (default: a new random one)")
    p.add_argument("--public-url", help="the URL browsers reach this server by, when it differs from "
                                        "http://HOST:PORT (a proxy, 0.0.0.0)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    token = _token(args.host, args.allow_remote, args.token)
    command = shlex.join([sys.executable, "-m", "cli.main", "--runs-dir", str(runs_dir(args.runs_dir))])
    server = cockpit_server(command, args.host, args.port, token, args.public_url)
    print(f"cockpit served on {server.public_url}/" + (f"?token={token}" if token else ""), flush=True)
    if not token:
        print(f"from another machine: ssh -L {args.port}:127.0.0.1:{args.port} <this host>, then open "
              f"http://127.0.0.1:{args.port}", flush=True)
    server.serve()
    return 0


def _token(host: str, allow_remote: bool, given: str | None) -> str | None:
    """The token to require: on loopback only the one given (none needed), else the one given or a new one; a
    wider bind without --allow-remote is an error."""
    if _loopback(host):
        return given
    if not allow_remote:
        raise UserError(f"--host {host} would serve the cockpit beyond this machine; add --allow-remote (requests "
                        "then need a token), or keep 127.0.0.1 and forward the port over SSH")
    return given or secrets.token_urlsafe(24)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def cockpit_server(command: str, host: str, port: int, token: str | None, public_url: str | None = None):
    """A textual-serve Server for `command` that, given a token, turns away requests without it."""
    from aiohttp import web
    from textual_serve.server import Server

    class CockpitServer(Server):
        async def _make_app(self) -> web.Application:
            app = await super()._make_app()
            if token:
                app.middlewares.append(_token_guard(token))
            return app

    return CockpitServer(command, host=host, port=port, title="cockpit", public_url=public_url)


def _token_guard(token: str):
    """aiohttp middleware: the page's static files are public; the page and its websocket need the token, as
    `?token=` (which sets the cookie) or the cookie."""
    from aiohttp import web

    @web.middleware
    async def guard(request: web.Request, handler):
        if request.path.startswith("/static/"):
            return await handler(request)
        given = request.query.get("token") or request.cookies.get(TOKEN_COOKIE, "")
        if not secrets.compare_digest(given.encode(), token.encode()):
            raise web.HTTPForbidden(text="cockpit: this server needs its token (the URL it printed has it)\n")
        response = await handler(request)
        if "token" in request.query and isinstance(response, web.Response):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict")
        return response

    return guard
