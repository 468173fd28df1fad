#!/usr/bin/env python3
"""Peer comparison: airbyte-source-salesforce reading the stand-in org.

Starts `perly standin salesforce --accounts N` in its own process (the
generated org `perly bench salesforce-sync` pulls), connects a client
through the stand-in's OAuth web-server flow (consent form, then the code
exchange) to get a refresh token, runs airbyte's `discover`, then times
airbyte's `read` of Account, Contact, Opportunity, Task and Event in
full-refresh mode. Prints records per stream, seconds, records/s and the
airbyte process's peak RSS (from wait4's rusage).

Airbyte hard-codes the login host (`https://login.salesforce.com` or
`https://test.salesforce.com`) for its refresh-token grant. This script
runs airbyte in a child Python process with one patch: requests whose URL
starts with one of those hosts go to the stand-in's login URL instead.
Nothing else is changed; every other call goes to the `instance_url` the
token answer names, as with a real org.

Usage (airbyte installed in a venv):

    python3 -m venv /work/venv-airbyte
    /work/venv-airbyte/bin/pip install airbyte-source-salesforce
    /work/venv-airbyte/bin/python scripts/bench-airbyte.py \\
        --perly target/release/perly --accounts 50000
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

STREAMS = ["Account", "Contact", "Opportunity", "Task", "Event"]
REAL_LOGIN_HOSTS = ("https://login.salesforce.com", "https://test.salesforce.com")
REDIRECT_URI = "http://localhost:8765/callback"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def refresh_token(info):
    """The web-server flow as a browser and a connected app do it."""
    authorize = f"{info['login_url']}/services/oauth2/authorize"
    form = {
        "response_type": "code",
        "client_id": info["client_id"],
        "redirect_uri": REDIRECT_URI,
        "scope": "api refresh_token",
        "state": "bench",
        "username": info["username"],
        "password": info["password"],
        "decision": "allow",
    }
    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(authorize, urllib.parse.urlencode(form).encode())
        raise SystemExit("the consent form did not redirect back")
    except urllib.error.HTTPError as redirect:
        if redirect.code not in (302, 303):
            raise
        location = redirect.headers["Location"]
    code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
    token = urllib.request.urlopen(
        f"{info['login_url']}/services/oauth2/token",
        urllib.parse.urlencode(
            {
                "grant_type": "authorization_code",
                "code": code,
                "client_id": info["client_id"],
                "client_secret": info["client_secret"],
                "redirect_uri": REDIRECT_URI,
            }
        ).encode(),
    )
    return json.load(token)["refresh_token"]


def airbyte_child(login_url, args):
    """Runs airbyte's entry point with the login host pointed at the stand-in."""
    from source_salesforce import api
    from source_salesforce.run import run

    make_request = api.Salesforce._make_request

    def to_standin(self, http_method, url, headers=None, body=None):
        for host in REAL_LOGIN_HOSTS:
            if url.startswith(host):
                url = login_url + url[len(host):]
        return make_request(self, http_method, url, headers=headers, body=body)

    api.Salesforce._make_request = to_standin
    sys.argv = ["source-salesforce", *args]
    run()


def airbyte(python, login_url, args, on_line, work):
    """Runs one airbyte command in `work` (airbyte downloads Bulk results
    into its working directory); returns (seconds, peak RSS MB, exit status)."""
    started = time.monotonic()
    child = subprocess.Popen(
        [python, os.path.abspath(__file__), "--airbyte-child", login_url, "--", *args],
        cwd=work,
        stdout=subprocess.PIPE,
        bufsize=1 << 20,
    )
    for line in child.stdout:
        on_line(line)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - started, usage.ru_maxrss / 1024, child.returncode


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--airbyte-child":
        airbyte_child(sys.argv[2], sys.argv[4:])
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--perly", default="target/release/perly", help="the perly binary")
    p.add_argument("--accounts", type=int, default=50_000)
    p.add_argument("--python", default=sys.executable, help="the Python with airbyte-source-salesforce")
    a = p.parse_args()

    standin = subprocess.Popen(
        [a.perly, "standin", "salesforce", "--accounts", str(a.accounts)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(standin.stdout.readline())
        work = tempfile.mkdtemp(prefix="bench-airbyte-")
        config = {
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "refresh_token": refresh_token(info),
            "is_sandbox": False,
            # The generated org's records span the two years before 2026-11-01.
            "start_date": "2020-01-01T00:00:00Z",
        }
        config_path = os.path.join(work, "config.json")
        with open(config_path, "w") as f:
            json.dump(config, f)

        catalog = {}

        def keep_catalog(line):
            msg = json.loads(line)
            if msg.get("type") == "CATALOG":
                catalog.update(msg["catalog"])
            elif msg.get("type") == "TRACE" and msg["trace"].get("type") == "ERROR":
                print(msg["trace"]["error"].get("message"), file=sys.stderr)

        secs, _, status = airbyte(a.python, info["login_url"], ["discover", "--config", config_path], keep_catalog, work)
        if status != 0 or not catalog:
            raise SystemExit(f"airbyte discover failed (exit {status})")
        print(f"discover: {len(catalog['streams'])} streams in {secs:.1f} s")
        configured = {
            "streams": [
                {"stream": s, "sync_mode": "full_refresh", "destination_sync_mode": "overwrite"}
                for s in catalog["streams"]
                if s["name"] in STREAMS
            ]
        }
        missing = set(STREAMS) - {s["stream"]["name"] for s in configured["streams"]}
        if missing:
            raise SystemExit(f"airbyte did not discover {sorted(missing)}")
        catalog_path = os.path.join(work, "catalog.json")
        with open(catalog_path, "w") as f:
            json.dump(configured, f)

        counts = {s: 0 for s in STREAMS}
        errors = []

        def count(line):
            # Records are most lines: a prefix test avoids parsing each one.
            if line.startswith(b'{"type":"RECORD"'):
                stream = line[line.index(b'"stream":"') + 10 :].split(b'"', 1)[0].decode()
                counts[stream] = counts.get(stream, 0) + 1
                return
            msg = json.loads(line)
            if msg.get("type") == "TRACE" and msg["trace"].get("type") == "ERROR":
                errors.append(msg["trace"]["error"].get("message"))
                print(msg["trace"]["error"].get("stack_trace", ""), file=sys.stderr)

        secs, rss, status = airbyte(
            a.python,
            info["login_url"],
            ["read", "--config", config_path, "--catalog", catalog_path],
            count,
            work,
        )
        total = sum(counts.values())
        for s in STREAMS:
            print(f"{s:<12} {counts[s]:>10}")
        print(f"airbyte read: {total} records in {secs:.1f} s ({total / secs:.0f} records/s), peak RSS {rss:.0f} MB")
        if errors or status != 0:
            raise SystemExit(f"airbyte read failed (exit {status}): {errors}")
    finally:
        standin.terminate()
        standin.wait()


if __name__ == "__main__":
    main()
