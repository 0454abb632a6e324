"""A SAML identity provider for tests, built on pysaml2's IdP (`saml2.server.Server`) and served on loopback:
GET /sso takes the SP's AuthnRequest (HTTP-Redirect) and shows a sign-in form; POST /login answers with a signed
response (HTTP-POST, auto-submitted). `respond()` builds responses for negative tests: other algorithms, another
audience, unsigned."""

from __future__ import annotations

import base64
import datetime
import html
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, xmldsig
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server

SHA256 = (xmldsig.SIG_RSA_SHA256, xmldsig.DIGEST_SHA256)
SHA1 = (xmldsig.SIG_RSA_SHA1, xmldsig.DIGEST_SHA1)
OTHER_SP = "https://another-sp.example.com"


def self_signed(tmp: Path, name: str) -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    key_path, cert_path = tmp / f"{name}.key", tmp / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


class SamlIdp:
    def __init__(self, tmp: Path) -> None:
        self.users: dict[str, list[str]] = {}  # user -> groups
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.entity_id = self.url + "/metadata"
        self.key_file, self.cert_file = self_signed(tmp, "idp")
        self.metadata_file = tmp / "idp-metadata.xml"
        self.metadata_file.write_text(str(entity_descriptor(self._config(None))))
        self.server: Server | None = None
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _config(self, sp_metadata: str | None, lifetime_minutes: int = 5) -> IdPConfig:
        settings: dict[str, Any] = {
            "entityid": self.entity_id,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "key_file": self.key_file, "cert_file": self.cert_file,
            "service": {"idp": {
                "endpoints": {"single_sign_on_service": [(self.url + "/sso", BINDING_HTTP_REDIRECT)]},
                "policy": {"default": {"lifetime": {"minutes": lifetime_minutes}, "name_form": NAME_FORMAT_BASIC,
                                       "attribute_restrictions": None}},
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
            }},
        }
        if sp_metadata is not None:  # and a second SP at the same ACS: responses meant for another audience
            other = re.sub(r'entityID="[^"]+"', f'entityID="{OTHER_SP}"', sp_metadata, count=1)
            settings["metadata"] = {"inline": [sp_metadata, other]}
        config = IdPConfig()
        config.load(settings)
        return config

    def trust_sp(self, sp_metadata: str) -> None:
        self.server = Server(config=self._config(sp_metadata))
        self.expired_server = Server(config=self._config(sp_metadata, lifetime_minutes=-10))

    def start(self) -> SamlIdp:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()

    def respond(self, saml_request: str, user: str, *, algorithms: tuple[str, str] = SHA256,
                audience: str | None = None, sign_response: bool = True, sign_assertion: bool = True,
                expired: bool = False) -> str:
        """A base64 SAMLResponse to the (HTTP-Redirect encoded) AuthnRequest."""
        server = self.expired_server if expired else self.server
        assert server is not None
        request = server.parse_authn_request(saml_request, BINDING_HTTP_REDIRECT)
        args = server.response_args(request.message, [BINDING_HTTP_POST])
        if audience is not None:
            args["sp_entity_id"] = audience
        name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=user)
        response = server.create_authn_response(
            {"email": [f"{user}@example.com"], "groups": self.users.get(user, [])}, userid=user, name_id=name_id,
            authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"},
            sign_response=sign_response, sign_assertion=sign_assertion, sign_alg=algorithms[0],
            digest_alg=algorithms[1], **args)
        return base64.b64encode(str(response).encode()).decode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = parse_qs(urlsplit(self.path).query)
                if not self.path.startswith("/sso"):
                    self._send(404, "not found")
                    return
                request, relay = query["SAMLRequest"][0], query.get("RelayState", [""])[0]
                self._send(200, f"""<!doctype html><title>Test IdP</title><h1>Test IdP</h1>
<form method=post action="/login"><input name=user placeholder=user>
<input type=hidden name=SAMLRequest value="{html.escape(request)}">
<input type=hidden name=RelayState value="{html.escape(relay)}">
<button type=submit>Sign in at the IdP</button></form>""")

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                assert idp.server is not None
                request = idp.server.parse_authn_request(form["SAMLRequest"], BINDING_HTTP_REDIRECT)
                args = idp.server.response_args(request.message, [BINDING_HTTP_POST])
                response = idp.respond(form["SAMLRequest"], form["user"])
                self._send(200, f"""<!doctype html><title>Posting</title><body onload="document.forms[0].submit()">
<form method=post action="{html.escape(args['destination'])}">
<input type=hidden name=SAMLResponse value="{html.escape(response)}">
<input type=hidden name=RelayState value="{html.escape(form.get('RelayState', ''))}">
<button type=submit>Continue</button></form>""")

            def _send(self, status: int, body: str) -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler
