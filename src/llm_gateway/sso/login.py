"""`llm-gateway login --url https://gateway`: sign in through the browser and get a short-lived personal key.

The client side of the gateway's device authorization (sso/device.py), standard library only: ask for a code,
open (or print) the verification page, poll until the person has signed in and approved, print the key and the
environment variables that point OpenAI- and Anthropic-style tools (Codex, Claude Code, the SDKs) at the gateway.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import webbrowser
from typing import Any, TextIO


def add_parser(sub: Any) -> None:
    login = sub.add_parser("login", help="sign in through your identity provider and get a short-lived key")
    login.add_argument("--url", required=True, help="the gateway's URL, e.g. https://llm.example.com")
    login.add_argument("--no-browser", action="store_true", help="print the sign-in URL instead of opening it")
    login.add_argument("--name", default="", help="a name for the key (default: this computer's host name)")
    login.add_argument("--timeout", type=float, default=600.0, help=argparse.SUPPRESS)


def _post(url: str, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(url, data=data, headers={"accept": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {"error": f"HTTP {error.code}"}


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    base = args.url.rstrip("/")
    if not base.startswith(("https://", "http://")):
        print("llm-gateway login: --url must start with https:// (or http:// for a local gateway)", file=sys.stderr)
        return 2
    try:
        status, code = _post(f"{base}/ui/sso/device/code", {"client_name": args.name or socket.gethostname()})
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"llm-gateway login: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    if status != 200 or "device_code" not in code:
        print(f"llm-gateway login: the gateway does not offer sign-in (HTTP {status}); is sso configured?",
              file=sys.stderr)
        return 1
    print(f"Open {code['verification_uri_complete']}\nand check that it shows the code {code['user_code']}.",
          file=out, flush=True)
    if not args.no_browser:
        webbrowser.open(code["verification_uri_complete"])
    deadline = time.monotonic() + min(float(code.get("expires_in", 600)), args.timeout)
    interval = max(1.0, float(code.get("interval", 2)))
    while time.monotonic() < deadline:
        time.sleep(interval)
        status, answer = _post(f"{base}/ui/sso/device/token", {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": code["device_code"]})
        if status == 200 and "access_token" in answer:
            key, hours = answer["access_token"], max(1, int(answer.get("expires_in", 3600)) // 3600)
            print(f"\nSigned in. Your personal key (valid {hours} h):\n\n"
                  f"  export OPENAI_BASE_URL={base}/v1\n  export OPENAI_API_KEY={key}\n"
                  f"  export ANTHROPIC_BASE_URL={base}\n  export ANTHROPIC_API_KEY={key}\n", file=out, flush=True)
            return 0
        error = answer.get("error")
        if error == "slow_down":
            interval += 5
        elif error != "authorization_pending":
            print(f"llm-gateway login: {answer.get('error_description') or error}", file=sys.stderr)
            return 1
    print("llm-gateway login: timed out waiting for the browser sign-in", file=sys.stderr)
    return 1
