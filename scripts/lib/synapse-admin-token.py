#!/usr/bin/env python3
"""synapse-admin-token.py BASE_URL SHARED_SECRET USERNAME PASSWORD

Registers USERNAME as a Synapse admin through the shared-secret admin API
(GET/POST /_synapse/admin/v1/register, HMAC-SHA1 over nonce, user, password, "admin") and
prints its access token. If the user exists already, logs in with the password instead.
Standard library only.
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
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def main():
    base, secret, user, password = sys.argv[1:5]
    _, got = call("GET", f"{base}/_synapse/admin/v1/register")
    nonce = got["nonce"]
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    for part in (nonce, user, password, "admin"):
        mac.update(part.encode())
        if part != "admin":
            mac.update(b"\x00")
    status, got = call("POST", f"{base}/_synapse/admin/v1/register",
                       {"nonce": nonce, "username": user, "password": password, "admin": True, "mac": mac.hexdigest()})
    if status == 400 and got.get("errcode") == "M_USER_IN_USE":
        status, got = call("POST", f"{base}/_matrix/client/v3/login",
                           {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                            "password": password})
    if status != 200 or "access_token" not in got:
        print(f"could not get a token for {user}: {status} {got}", file=sys.stderr)
        sys.exit(1)
    print(got["access_token"])


if __name__ == "__main__":
    main()
