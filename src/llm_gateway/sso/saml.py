"""SAML 2.0 sign-in for people (pysaml2, xmlsec1): SP-initiated (HTTP-Redirect out, HTTP-POST back), a signed
response or assertion required, audience, destination, recipient, InResponseTo and expiry checked by pysaml2,
SHA-1 signatures and digests refused before anything is verified, assertion ids remembered in the database until
they expire (a replay is refused on every replica), and the SP's metadata served for the IdP.

The request id travels in a signed RelayState: the IdP's POST back is cross-site, and the browser does not send
SameSite=Lax cookies with it. So that a response is signed in only in the browser that started its sign-in (not in
a victim's, to whom someone posts their own response: login CSRF), the ACS does not sign in: it checks the response,
then sends the browser (a top-level GET, which carries Lax cookies) to `finish` with a short-lived signed ticket,
and `finish` signs in when the browser's flow cookie, set at `start`, names the same request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import calendar
import hmac
import logging
import shutil
import time
from typing import Any

from defusedxml import ElementTree
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.s_utils import UnknownPrincipal, UnsupportedBinding
from saml2.saml import NAMEID_FORMAT_UNSPECIFIED
from sqlalchemy import Engine, delete, insert
from sqlalchemy.exc import IntegrityError

from llm_gateway.db.tables import saml_assertions
from llm_gateway.settings import SamlProviderConfig
from llm_gateway.ui.session import base_path

from .routes import FLOW_MAX_AGE_S, SSO_HEADERS, SignIns, refusal_page

TICKET_MAX_AGE_S = 120  # from the ACS to `finish`: one redirect

log = logging.getLogger("llm_gateway.sso")
_DSIG = "{http://www.w3.org/2000/09/xmldsig#}"
_WEAK = ("sha1", "md5")  # rsa-sha1, dsa-sha1, xmldsig#sha1, hmac-sha1 ...


def weak_algorithms(xml: bytes) -> list[str]:
    """The signature and digest algorithms in a SAML message that are SHA-1 (or weaker)."""
    root = ElementTree.fromstring(xml, forbid_dtd=True)
    found = []
    for tag in ("SignatureMethod", "DigestMethod"):
        for node in root.iter(_DSIG + tag):
            algorithm = node.get("Algorithm", "")
            if any(w in algorithm.rsplit("#", 1)[-1].lower() for w in _WEAK):
                found.append(algorithm)
    return found


class SamlProvider:
    def __init__(self, config: SamlProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.label = config.label or config.name
        self._clients: dict[str, Saml2Client] = {}

    def sp_entity_id(self, root: str) -> str:
        return self.config.sp_entity_id or f"{root}/sso/saml/{self.name}/metadata"

    def client(self, root: str) -> Saml2Client:
        """The SP for the gateway's URL `root` (…/ui); built once (loading the IdP's metadata)."""
        found = self._clients.get(root)
        if found is not None:
            return found
        acs = f"{root}/sso/saml/{self.name}/acs"
        metadata: dict[str, Any] = ({"local": [self.config.metadata_file]} if self.config.metadata_file
                                    else {"remote": [{"url": self.config.metadata_url}]})
        settings: dict[str, Any] = {
            "entityid": self.sp_entity_id(root),
            "metadata": metadata,
            "xmlsec_binary": shutil.which("xmlsec1"),
            "allow_unknown_attributes": True,
            "service": {"sp": {
                "endpoints": {"assertion_consumer_service": [(acs, BINDING_HTTP_POST)]},
                "allow_unsolicited": False,
                "want_response_signed": False,
                "want_assertions_signed": False,
                "want_assertions_or_response_signed": True,
                "authn_requests_signed": bool(self.config.sp_key_file),
                "name_id_format": NAMEID_FORMAT_UNSPECIFIED,
                "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
            }},
        }
        if self.config.sp_key_file:
            settings["key_file"] = self.config.sp_key_file
            settings["cert_file"] = self.config.sp_cert_file
        config = SPConfig()
        config.load(settings)
        client = Saml2Client(config=config)
        self._clients[root] = client
        return client

    def metadata_xml(self, root: str) -> str:
        return str(entity_descriptor(self.client(root).config))


class SamlRoutes:
    def __init__(self, providers: list[SamlProvider], signins: SignIns, engine: Engine) -> None:
        self.providers = {p.name: p for p in providers}
        self.signins = signins
        self.engine = engine

    def add_to(self, router: APIRouter) -> None:
        router.add_api_route("/sso/saml/{name}/start", self.start, methods=["GET"])
        router.add_api_route("/sso/saml/{name}/acs", self.acs, methods=["POST"])
        router.add_api_route("/sso/saml/{name}/finish", self.finish, methods=["GET"])
        router.add_api_route("/sso/saml/{name}/metadata", self.metadata, methods=["GET"])

    def _root(self, request: Request) -> str:
        return self.signins.url(request, "")

    async def metadata(self, request: Request, name: str) -> Response:
        provider = self.providers.get(name)
        if provider is None:
            return Response(status_code=404)
        xml = await asyncio.to_thread(provider.metadata_xml, self._root(request))
        return Response(xml, media_type="application/samlmetadata+xml")

    async def start(self, request: Request, name: str) -> Response:
        provider = self.providers.get(name)
        if provider is None:
            return refusal_page(request, "no such sign-in method", 404)
        try:
            client = await asyncio.to_thread(provider.client, self._root(request))
            then = request.query_params.get("then", "")[:300]
            info, request_id = await asyncio.to_thread(self._prepare, client, provider, then)
        except Exception as exc:  # metadata unreachable or unusable: say so, never a trace
            log.warning("saml %s: cannot start (%s: %s)", name, type(exc).__name__, exc)
            return refusal_page(request, f"{provider.label} cannot be reached; try again shortly", 503)
        location = dict(info["headers"])["Location"]
        response = RedirectResponse(location, status_code=303, headers={"cache-control": "no-store"})
        self.signins.keep_flow(request, response, {"saml": request_id})  # `finish` checks it is this browser
        return response

    def _prepare(self, client: Saml2Client, provider: SamlProvider, then: str) -> tuple[dict[str, Any], str]:
        request_id, request_xml = client.create_authn_request(
            client.sso_location(provider.config.entity_id, BINDING_HTTP_REDIRECT), binding=BINDING_HTTP_REDIRECT)
        relay = self.signins.signer.dumps({"saml": request_id, "then": then})
        info: dict[str, Any] = client.apply_binding(
            BINDING_HTTP_REDIRECT, str(request_xml),
            client.sso_location(provider.config.entity_id, BINDING_HTTP_REDIRECT), relay_state=relay)
        return info, str(request_id)

    async def acs(self, request: Request, name: str) -> Response:
        provider = self.providers.get(name)
        if provider is None:
            return refusal_page(request, "no such sign-in method", 404)
        form = await request.form()
        raw, relay = str(form.get("SAMLResponse") or ""), str(form.get("RelayState") or "")
        try:
            flow = self.signins.signer.loads(relay, max_age=FLOW_MAX_AGE_S)
            request_id = str(flow["saml"])
        except (BadSignature, KeyError, TypeError):
            return await self.signins.refused(request, "saml", name, "the sign-in expired or was not started here")
        try:
            xml = base64.b64decode(raw, validate=True)
            weak = weak_algorithms(xml)
        except (binascii.Error, ValueError, ElementTree.ParseError):
            return await self.signins.refused(request, "saml", name, "the SAML response is not well-formed")
        if weak:
            return await self.signins.refused(request, "saml", name, "SHA-1 signatures and digests are refused: "
                                        + ", ".join(sorted(set(weak))))
        root = self._root(request)
        acs = f"{root}/sso/saml/{name}/acs"
        try:
            client = await asyncio.to_thread(provider.client, root)
            response = await asyncio.to_thread(client.parse_authn_request_response, raw, BINDING_HTTP_POST,
                                               {request_id: acs})
        except (UnknownPrincipal, UnsupportedBinding) as exc:
            return await self.signins.refused(request, "saml", name, f"the SAML response is not accepted ({exc})")
        except Exception as exc:  # pysaml2 raises many types; every one is a refusal, explained
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            if reason == "Condition not OK":  # pysaml2's word for NotBefore / NotOnOrAfter outside the clock
                reason = "the assertion has expired or is not yet valid (Conditions)"
            return await self.signins.refused(request, "saml", name,
                                        f"the SAML response is not accepted ({type(exc).__name__}: {reason})")
        if response is None:
            return await self.signins.refused(request, "saml", name, "the SAML response is not accepted")
        assertion = response.assertion
        expires = _not_on_or_after(response)
        if not await asyncio.to_thread(self._first_use, f"{provider.config.entity_id}|{assertion.id}", expires):
            return await self.signins.refused(request, "saml", name, "this SAML assertion was already used (replay)")
        attributes: dict[str, list[str]] = response.get_identity() or {}
        subject_attr = provider.config.user_attribute
        subject = (attributes.get(subject_attr) or [""])[0] if subject_attr else response.get_subject().text
        if not subject:
            return await self.signins.refused(request, "saml", name, "the SAML assertion names no user")
        email = next(iter(attributes.get("email") or attributes.get("mail") or []), None)
        display = next(iter(attributes.get("displayName") or attributes.get("name") or []), None)
        groups = [g for g in attributes.get(provider.config.groups_attribute) or [] if isinstance(g, str)]
        mapping = self.signins.sync.mapping  # only mapped groups matter to the sync: the ticket stays short
        ticket = self.signins.signer.dumps({"saml_ticket": request_id, "subject": str(subject),
                                            "groups": [g for g in groups if g in mapping], "email": email,
                                            "name": display, "then": str(flow.get("then") or "")})
        return RedirectResponse(f"{base_path(request)}/sso/saml/{name}/finish?ticket={ticket}", status_code=303,
                                headers=SSO_HEADERS)

    async def finish(self, request: Request, name: str) -> Response:
        """The sign-in, in the browser whose flow cookie names the request the checked response answered."""
        provider = self.providers.get(name)
        if provider is None:
            return refusal_page(request, "no such sign-in method", 404)
        try:
            ticket = self.signins.signer.loads(request.query_params.get("ticket", ""), max_age=TICKET_MAX_AGE_S)
            request_id = str(ticket["saml_ticket"])
        except (BadSignature, KeyError, TypeError):
            return await self.signins.refused(request, "saml", name, "the sign-in expired or was not started here")
        flow = self.signins.read_flow(request)
        started = str((flow or {}).get("saml") or "")
        if not started or not hmac.compare_digest(started.encode(), request_id.encode()):
            return await self.signins.refused(request, "saml", name, "the sign-in was not started in this browser",
                                              subject=str(ticket.get("subject") or "") or None)
        email, display = ticket.get("email"), ticket.get("name")
        return await self.signins.complete(
            request, issuer=provider.config.entity_id, subject=str(ticket["subject"]),
            groups=[str(g) for g in ticket.get("groups") or []], method="saml", provider=name,
            email=email if isinstance(email, str) else None, name=display if isinstance(display, str) else None,
            then=str(ticket.get("then") or "") or None)

    def _first_use(self, assertion_id: str, expires_ms: int) -> bool:
        now = int(time.time() * 1000)
        with self.engine.begin() as conn:
            conn.execute(delete(saml_assertions).where(saml_assertions.c.expires_at < now))
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(saml_assertions).values(id=assertion_id[:256], expires_at=expires_ms))
        except IntegrityError:
            return False
        return True


def _not_on_or_after(response: Any) -> int:
    """When the assertion stops being valid (epoch ms); a day from now when it does not say."""
    latest = 0
    for data in response.assertion.subject.subject_confirmation or []:
        confirmation = data.subject_confirmation_data
        if confirmation is not None and confirmation.not_on_or_after:
            latest = max(latest, calendar.timegm(time.strptime(confirmation.not_on_or_after[:19],
                                                               "%Y-%m-%dT%H:%M:%S")))
    return (latest or int(time.time()) + 86_400) * 1000 + 300_000


def saml_providers(configs: list[SamlProviderConfig]) -> list[SamlProvider]:
    if shutil.which("xmlsec1") is None:
        raise RuntimeError("sso.saml needs the xmlsec1 program (Debian: apt-get install xmlsec1)")
    return [SamlProvider(c) for c in configs]


