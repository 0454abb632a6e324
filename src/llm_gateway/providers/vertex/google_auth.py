"""Google access tokens from Application Default Credentials, through google-auth (the `vertex` extra).

ADC finds, in order: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key or a workload identity federation
file), gcloud's own ADC file, then the metadata server (GCE, GKE workload identity; `GCE_METADATA_HOST`).
Imported only when a `vertex` provider is configured.
"""

from __future__ import annotations

import importlib
import json
import os
from datetime import UTC
from typing import Any

import google.auth
import google.auth.transport.requests

from llm_gateway.providers.credentials import Issued

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
AWS_SUBJECT_TOKEN_TYPE = "urn:ietf:params:aws:token-type:aws4_request"


def from_file(path: str) -> Any:
    """Credentials from a JSON file. Workload identity federation files (`external_account`) are built from their
    own classes: google-auth's file loader would also look their project up at cloudresourcemanager.googleapis.com,
    a call the gateway does not need (the provider names its project) and a host it may not be allowed to reach."""
    with open(path, encoding="utf-8") as file:
        info = json.load(file)
    if not isinstance(info, dict) or info.get("type") != "external_account":
        creds, _ = google.auth.load_credentials_from_file(path, scopes=[SCOPE])  # type: ignore[no-untyped-call]
        return creds
    if info.get("subject_token_type") == AWS_SUBJECT_TOKEN_TYPE:
        module = importlib.import_module("google.auth.aws")
    elif (info.get("credential_source") or {}).get("executable") is not None:
        module = importlib.import_module("google.auth.pluggable")
    else:
        module = importlib.import_module("google.auth.identity_pool")
    return module.Credentials.from_info(info, scopes=[SCOPE])


class GoogleTokens:
    """A fetch for providers.credentials.Refresher: each call refreshes the credentials and returns the header."""

    def __init__(self, credentials_file: str | None) -> None:
        self.credentials_file = credentials_file
        self._credentials: Any = None
        self._request = google.auth.transport.requests.Request()

    def __call__(self) -> Issued[str]:
        if self._credentials is None:  # found once; ADC may probe the metadata server, which takes a moment
            path = self.credentials_file or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
            if path:
                self._credentials = from_file(path)
            else:
                self._credentials, _ = google.auth.default(scopes=[SCOPE])
        creds = self._credentials
        creds.refresh(self._request)
        expiry = creds.expiry  # a naive UTC datetime, or None
        return Issued(f"Bearer {creds.token}", expiry.replace(tzinfo=UTC).timestamp() if expiry else None)
