"""From an IdP identity to a gateway user: the user is created on first sight, its teams and admin role follow the
IdP's groups through `sso.group_mapping`, and keys held through a team the user has left are blocked at once.

The sync point is every sign-in and every new access token (no SCIM): a group removed at the IdP takes the team
away at the next one. A user in several mapped groups is in each of their teams (keys/members.py). Only teams named
in the mapping are managed; a team an admin gave by hand is left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.exc import IntegrityError

from llm_gateway.keys.members import Plan
from llm_gateway.keys.model import KeyRecord, UserRecord
from llm_gateway.keys.roles import USER, Identity, of_sso_user
from llm_gateway.keys.store import Store

from .audit import AuditLog

ADMIN_TARGET = "admin"


def user_id_for(issuer: str, subject: str) -> str:
    """A stable user id per (issuer, subject): the same person through OIDC and API tokens is one user."""
    return "sso_" + hashlib.sha256(f"{issuer.rstrip('/')}\n{subject}".encode()).hexdigest()[:32]


def groups_of(claims: dict[str, Any], claim: str) -> list[str]:
    """The groups claim as a list of strings (a single string is one group; anything else is none)."""
    value = claims.get(claim)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [g for g in value if isinstance(g, str)]
    return []


@dataclass(frozen=True, slots=True)
class Synced:
    user: UserRecord
    admin: bool
    teams: tuple[str, ...]  # every team the user is in afterwards (mapped or set by an admin), primary first
    blocked: tuple[KeyRecord, ...]  # keys blocked by this sync: the caller puts them in the key cache

    def identity(self) -> Identity:
        """As the dashboard re-derives it at every request from the user's record (keys/roles.py)."""
        return of_sso_user(self.user)


class GroupSync:
    def __init__(self, mapping: dict[str, str], store: Store, audit: AuditLog) -> None:
        self.mapping = mapping
        self.managed = frozenset(t for t in mapping.values() if t != ADMIN_TARGET)
        self.store = store
        self.audit = audit

    def targets(self, groups: Iterable[str]) -> tuple[bool, tuple[str, ...]]:
        """(admin?, teams) in the mapping's order: a new user's primary team is the first of its mapped teams."""
        held = set(groups)
        admin = any(g in held and t == ADMIN_TARGET for g, t in self.mapping.items())
        teams = tuple(dict.fromkeys(t for g, t in self.mapping.items() if g in held and t != ADMIN_TARGET))
        return admin, teams

    def plan(self, mapped: tuple[str, ...]) -> Plan:
        """Exactly the mapped teams among the managed ones; teams outside the mapping (an admin's) stay. The primary
        team stays while the user is in it; otherwise it is the first mapped team."""
        def wanted(current: list[str], primary: str | None) -> tuple[list[str], str | None]:
            return [*mapped, *(t for t in current if t not in self.managed)], None
        return wanted

    def sync(self, *, issuer: str, subject: str, groups: list[str], method: str, provider: str,
             email: str | None = None, name: str | None = None) -> Synced:
        """Blocking (database): run it in a thread."""
        admin, teams = self.targets(groups)
        uid = user_id_for(issuer, subject)
        user = self.store.get_user(uid)
        sso = {"issuer": issuer, "subject": subject, "admin": admin, "teams": list(teams), "name": name or ""}
        audit = {"method": method, "provider": provider, "subject": subject, "user_id": uid}
        before: dict[str, Any] = {}
        if user is None:
            try:
                _, user = self.store.create_user({"id": uid, "email": email, "metadata": {"sso": sso}})
            except IntegrityError:  # created at this moment by another sign-in (or replica): sync as usual
                return self.sync(issuer=issuer, subject=subject, groups=groups, method=method, provider=provider,
                                 email=email, name=name)
        else:
            before = user.metadata.get("sso") or {}
            if before != sso or (email and email != user.email):
                user = self.store.update_user(uid, {"email": email or user.email,
                                                    "metadata": {**user.metadata, "sso": sso}})
        self._ensure_teams(teams)
        changed = self.store.change_teams(uid, self.plan(teams), "sso", also_block=self.managed)
        if changed is None or user is None:  # deleted at this moment by an admin: sign in anew
            return self.sync(issuer=issuer, subject=subject, groups=groups, method=method, provider=provider,
                             email=email, name=name)
        if bool(before.get("admin")) != admin:
            self.audit.write("role_change", **audit, role="admin", change="granted" if admin else "revoked")
        if changed.joined or changed.left:
            self.audit.write("team_change", **audit, joined=sorted(changed.joined), left=sorted(changed.left))
        for key in changed.blocked:
            self.audit.write("key_blocked", **audit, key_id=key.id, team_id=key.team_id)
        if changed.demoted:  # the team-admin role stays with the team it was given for (keys/members.py)
            self.audit.write("role_change", **audit, **changed.demotion())
        role = USER if changed.demoted else user.role
        return Synced(replace(user, team_id=changed.primary, role=role), admin, changed.teams, changed.blocked)

    def _ensure_teams(self, teams: tuple[str, ...]) -> None:
        """Mapped teams exist (created on first need, named by their id), so the dashboard can show them."""
        for team in teams:
            if self.store.get_team(team) is None:
                try:
                    self.store.create_team({"id": team, "name": team})
                except IntegrityError:
                    pass  # created meanwhile elsewhere
