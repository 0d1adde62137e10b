#!/usr/bin/env python3
"""fake-services.py PORT [--authentik-token TOKEN]

Stand-ins for the stack's services that cannot run on this machine (Vikunja, authentik, MAS's
internal health listener), answering in their documented shapes, plus a bare target for load
benchmarks. One asyncio HTTP/1.1 server with keep-alive on 127.0.0.1:PORT; it counts requests.

  GET /health                 Vikunja: 200 text "OK"
  GET /api/v1/info            Vikunja: BuildInfo JSON (v2.5.0)
  GET /-/health/live/         authentik liveness: 200
  GET /-/health/ready/        authentik readiness: 200
  GET /api/v3/admin/version/  authentik version (Bearer TOKEN, else 403 with DRF's body)
  GET /mas/health             MAS internal health: 200 "ok"
  GET /target/...             200 "OK" (benchmark target)
  GET /count                  requests served so far (this one excluded), as a number

Used by scripts/bench-daemon.sh. Stops on SIGTERM/SIGINT.
"""
import asyncio
import json
import signal
import sys

COUNT = 0
VIKUNJA_INFO = json.dumps({
    "version": "v2.5.0", "frontend_url": "https://tasks.example.com/", "motd": "",
    "link_sharing_enabled": True, "max_file_size": "20MB", "max_items_per_page": 50,
    "available_migrators": ["vikunja-file", "csv"], "task_attachments_enabled": True,
    "enabled_background_providers": ["upload"], "totp_enabled": True,
    "legal": {"imprint_url": "", "privacy_policy_url": ""}, "caldav_enabled": True,
    "auth": {"local": {"enabled": True, "registration_enabled": True}, "ldap": {"enabled": False},
             "openid_connect": {"enabled": False, "providers": []}},
    "email_reminders_enabled": True, "user_deletion_enabled": True, "task_comments_enabled": True,
    "demo_mode_enabled": False, "webhooks_enabled": True, "public_teams_enabled": False,
    "allow_icon_changes": True, "enabled_pro_features": [], "concurrent_writes": True,
}).encode()
AUTHENTIK_VERSION = json.dumps({
    "version_current": "2026.11.0", "version_latest": "2026.11.0", "version_latest_valid": True,
    "build_hash": "0123abc", "outdated": False, "outpost_outdated": False,
}).encode()


def answer(path, headers, token):
    """(status, content type, body) for a GET of path."""
    if path == "/health":
        return 200, "text/plain; charset=UTF-8", b"OK"
    if path == "/api/v1/info":
        return 200, "application/json", VIKUNJA_INFO
    if path in ("/-/health/live/", "/-/health/ready/"):
        return 200, "text/plain", b""
    if path == "/api/v3/admin/version/":
        if token and headers.get("authorization") == f"Bearer {token}":
            return 200, "application/json", AUTHENTIK_VERSION
        return 403, "application/json", b'{"detail": "Authentication credentials were not provided."}'
    if path == "/mas/health":
        return 200, "text/plain", b"ok"
    if path.startswith("/target/"):
        return 200, "text/plain", b"OK"
    return 404, "text/plain", b"not found"


async def handle(reader, writer, token):
    global COUNT
    try:
        while True:
            request = await reader.readuntil(b"\r\n\r\n")
            lines = request.decode("latin-1").split("\r\n")
            method, target, _ = (lines[0].split(" ") + ["", "", ""])[:3]
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            path = target.split("?", 1)[0]
            if path == "/count":
                status, ctype, body = 200, "text/plain", str(COUNT).encode()
            else:
                COUNT += 1
                status, ctype, body = answer(path, headers, token)
            if method == "HEAD":
                body_out = b""
            else:
                body_out = body
            close = headers.get("connection", "").lower() == "close"
            head = (f"HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n")
            writer.write(head.encode() + body_out)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main():
    port = int(sys.argv[1])
    token = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--authentik-token" else None
    server = await asyncio.start_server(lambda r, w: handle(r, w, token), "127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
