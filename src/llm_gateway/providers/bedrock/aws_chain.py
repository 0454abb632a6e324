"""AWS credentials from botocore's standard chain (the `aws` extra), for Bedrock providers without keys.

The chain, as the AWS SDKs read it: environment (`AWS_ACCESS_KEY_ID`, ...), shared config and credentials
files and their profiles (`AWS_PROFILE`, SSO, `credential_process`, `role_arn` + `source_profile`), web identity
(`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: EKS IRSA), container credentials (ECS, EKS Pod Identity:
`AWS_CONTAINER_CREDENTIALS_FULL_URI` / `_RELATIVE_URI`), then the instance metadata service (IMDSv2).
`role_arn` assumes a role with the credentials the chain found. botocore only resolves and refreshes
credentials here; requests are still signed by our own SigV4 signer (providers/bedrock/sigv4.py).
Imported only when such a provider is configured.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.credentials import AssumeRoleCredentialFetcher, DeferredRefreshableCredentials

from llm_gateway.providers.bedrock.sigv4 import Credentials, Signer
from llm_gateway.providers.credentials import Issued

# botocore refreshes on access once credentials have less than 15 minutes left (its advisory window): our
# background refresh comes 10 minutes before expiry, inside that window, so each of ours makes it fetch anew.
MARGIN_S = 600.0


class AwsChain:
    """A fetch for providers.credentials.Refresher: the current credentials as a signer."""

    def __init__(self, region: str, service: str, *, profile: str | None = None, role_arn: str | None = None,
                 session_name: str = "llm-gateway", external_id: str | None = None,
                 session_factory: Callable[..., Any] = botocore.session.Session) -> None:
        self.region = region
        self.service = service
        self.profile = profile
        self.role_arn = role_arn
        self.session_name = session_name
        self.external_id = external_id
        self.session_factory = session_factory
        self._credentials: Any = None

    def _resolve(self) -> Any:
        session = self.session_factory(profile=self.profile)
        if session.get_config_variable("region") is None:
            session.set_config_variable("region", self.region)  # for the STS client, when nothing sets one
        found = session.get_credentials()
        if found is None:
            raise LookupError("no AWS credentials in the environment, shared files, web identity, container "
                              "credentials or instance metadata")
        if not self.role_arn:
            return found
        extra: dict[str, Any] = {"RoleSessionName": self.session_name}
        if self.external_id:
            extra["ExternalId"] = self.external_id
        fetcher = AssumeRoleCredentialFetcher(client_creator=session.create_client, source_credentials=found,
                                              role_arn=self.role_arn, extra_args=extra)
        return DeferredRefreshableCredentials(method="assume-role", refresh_using=fetcher.fetch_credentials)

    def __call__(self) -> Issued[Signer]:
        if self._credentials is None:
            self._credentials = self._resolve()
        frozen = self._credentials.get_frozen_credentials()  # refreshes when due (see MARGIN_S)
        expiry = getattr(self._credentials, "_expiry_time", None)  # refreshable credentials only; not public
        signer = Signer(Credentials(frozen.access_key, frozen.secret_key, frozen.token), self.region, self.service)
        return Issued(signer, expiry.timestamp() if expiry is not None else None)
