"""A local identity provider's key service for tests: a JWKS endpoint (and discovery document) on loopback whose
keys the test can rotate, and a signer for access tokens as an IdP (Entra ID, Okta, Keycloak) issues them."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey


class JwksServer:
    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/jwks":
                    server.hits += 1
                    body = {"keys": [k.as_dict(private=False) | {"use": "sig"} for k in server.keys]}
                elif self.path == "/.well-known/openid-configuration":
                    body = {"issuer": server.url, "jwks_uri": server.url + "/jwks"}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> JwksServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()

    def add_rsa(self, kid: str) -> RSAKey:
        key = RSAKey.generate_key(2048, parameters={"kid": kid, "alg": "RS256"})
        self.keys.append(key)
        return key

    def add_ec(self, kid: str) -> ECKey:
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256"})
        self.keys.append(key)
        return key


def token(key: Any, alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    body = {"iat": now, "exp": now + 600, **claims}
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": key.kid}, body, key)
