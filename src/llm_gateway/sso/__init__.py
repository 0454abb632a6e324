"""Single sign-on: OIDC and SAML sign-in for people, IdP access tokens for programs, teams from the IdP's groups."""
