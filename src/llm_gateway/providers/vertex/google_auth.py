"""Google access tokens from Application Default Credentials, through google-auth (the `vertex` extra).

ADC finds, in order: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key or a workload identity federation
file), gcloud's own ADC file, then the metadata server (GCE, GKE workload identity; `GCE_METADATA_HOST`).
Imported only when a `vertex` provider is configured.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

import google.auth
import google.auth.transport.requests

from llm_gateway.providers.credentials import Issued

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


class GoogleTokens:
    """A fetch for providers.credentials.Refresher: each call refreshes the credentials and returns the header."""

    def __init__(self, credentials_file: str | None) -> None:
        self.credentials_file = credentials_file
        self._credentials: Any = None
        self._request = google.auth.transport.requests.Request()

    def __call__(self) -> Issued[str]:
        if self._credentials is None:  # found once; ADC may probe the metadata server, which takes a moment
            if self.credentials_file:
                creds, _ = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
                    self.credentials_file, scopes=[SCOPE])
            else:
                creds, _ = google.auth.default(scopes=[SCOPE])
            self._credentials = creds
        creds = self._credentials
        creds.refresh(self._request)
        expiry = creds.expiry  # a naive UTC datetime, or None
        return Issued(f"Bearer {creds.token}", expiry.replace(tzinfo=UTC).timestamp() if expiry else None)
