#!/usr/bin/env python3
"""synapse-admin-token.py BASE_URL SHARED_SECRET USERNAME PASSWORD

Registers USERNAME as a Synapse server admin through the shared-secret registration admin
API and prints its access token on stdout:

    GET  /_synapse/admin/v1/register            -> {"nonce": ...}
    POST /_synapse/admin/v1/register            {nonce, username, password, admin: true, mac}
    mac = hex(HMAC-SHA1(secret, nonce \\0 username \\0 password \\0 "admin"))

If the user exists already (M_USER_IN_USE), it logs in with m.login.password instead.
Standard library only. Exit status 1 with a message on stderr when no token can be had.
"""
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.request


def call(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except OSError as e:
        sys.exit(f"synapse-admin-token.py: {method} {url}: {e}")
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, {"error": raw.decode(errors="replace")[:500]}


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__.strip().splitlines()[0])
    base, secret, user, password = sys.argv[1:5]
    base = base.rstrip("/")
    status, got = call("GET", f"{base}/_synapse/admin/v1/register")
    if status != 200 or "nonce" not in got:
        sys.exit(f"synapse-admin-token.py: no registration nonce ({status} {got}); is registration_shared_secret set?")
    nonce = got["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(b"\x00".join(p.encode() for p in (nonce, user, password, "admin")))
    status, got = call("POST", f"{base}/_synapse/admin/v1/register",
                       {"nonce": nonce, "username": user, "password": password, "admin": True,
                        "mac": mac.hexdigest()})
    if got.get("errcode") == "M_USER_IN_USE":
        status, got = call("POST", f"{base}/_matrix/client/v3/login",
                           {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                            "password": password})
    if status != 200 or "access_token" not in got:
        sys.exit(f"synapse-admin-token.py: no token for {user}: {status} {got}")
    print(got["access_token"])


if __name__ == "__main__":
    main()
