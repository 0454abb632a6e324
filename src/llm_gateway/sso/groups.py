"""From an IdP identity to a gateway user: the user is created on first sight, its team and admin role follow the
IdP's groups through `sso.group_mapping`, and keys held through a team the user has left are blocked at once.

The sync point is every sign-in and every new access token (no SCIM): a group removed at the IdP takes the team
away at the next one. Only teams named in the mapping are managed; a team an admin set by hand is left alone.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from llm_gateway.keys.model import KeyRecord, UserRecord
from llm_gateway.keys.roles import ADMIN, USER, Identity
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
    teams: tuple[str, ...]
    blocked: tuple[KeyRecord, ...]  # keys blocked by this sync: the caller puts them in the key cache

    def identity(self) -> Identity:
        roles = {USER, ADMIN} if self.admin else {USER}
        user = self.user
        return Identity(user.id, frozenset(roles), user_id=user.id, team_id=user.team_id,
                        name=user.email or str(user.metadata.get("sso", {}).get("name") or user.id))


class GroupSync:
    def __init__(self, mapping: dict[str, str], store: Store, audit: AuditLog) -> None:
        self.mapping = mapping
        self.managed = frozenset(t for t in mapping.values() if t != ADMIN_TARGET)
        self.store = store
        self.audit = audit

    def targets(self, groups: Iterable[str]) -> tuple[bool, tuple[str, ...]]:
        """(admin?, teams) in the mapping's order, so a user in two mapped groups gets a predictable first team."""
        held = set(groups)
        admin = any(g in held and t == ADMIN_TARGET for g, t in self.mapping.items())
        teams = tuple(dict.fromkeys(t for g, t in self.mapping.items() if g in held and t != ADMIN_TARGET))
        return admin, teams

    def sync(self, *, issuer: str, subject: str, groups: list[str], method: str, provider: str,
             email: str | None = None, name: str | None = None) -> Synced:
        """Blocking (database): run it in a thread."""
        admin, teams = self.targets(groups)
        uid = user_id_for(issuer, subject)
        user = self.store.get_user(uid)
        sso = {"issuer": issuer, "subject": subject, "admin": admin, "teams": list(teams), "name": name or ""}
        audit = {"method": method, "provider": provider, "subject": subject, "user_id": uid}
        if user is None:
            self._ensure_teams(teams)
            try:
                _, user = self.store.create_user({"id": uid, "email": email,
                                                  "team_id": teams[0] if teams else None, "metadata": {"sso": sso}})
            except IntegrityError:  # created at this moment by another sign-in (or replica): sync as usual
                return self.sync(issuer=issuer, subject=subject, groups=groups, method=method, provider=provider,
                                 email=email, name=name)
            if admin:
                self.audit.write("role_change", **audit, role="admin", change="granted")
            if teams:
                self.audit.write("team_change", **audit, joined=list(teams), left=[])
            return Synced(user, admin, teams, ())
        before = user.metadata.get("sso") or {}
        team = user.team_id
        if team is None or team in self.managed:  # a hand-set team outside the mapping is left alone
            team = teams[0] if teams else None
        self._ensure_teams(teams)
        if team != user.team_id or before != sso or (email and email != user.email):
            user = self.store.update_user(uid, {"team_id": team, "email": email or user.email,
                                                "metadata": {**user.metadata, "sso": sso}}) or user
        if bool(before.get("admin")) != admin:
            self.audit.write("role_change", **audit, role="admin", change="granted" if admin else "revoked")
        old_teams = set(before.get("teams") or ())
        if old_teams != set(teams):
            self.audit.write("team_change", **audit, joined=sorted(set(teams) - old_teams),
                             left=sorted(old_teams - set(teams)))
        return Synced(user, admin, teams, tuple(self._block_left(user, teams, audit)))

    def _ensure_teams(self, teams: tuple[str, ...]) -> None:
        """Mapped teams exist (created on first need, named by their id), so the dashboard can show them."""
        for team in teams:
            if self.store.get_team(team) is None:
                try:
                    self.store.create_team({"id": team, "name": team})
                except IntegrityError:
                    pass  # created meanwhile elsewhere

    def _block_left(self, user: UserRecord, teams: tuple[str, ...], audit: dict[str, Any]) -> list[KeyRecord]:
        """Block the user's keys of managed teams it no longer belongs to."""
        blocked = []
        for key in self.store.list_keys(None, 10_000, user_id=user.id):
            if key.blocked or key.team_id is None or key.team_id not in self.managed or key.team_id in teams:
                continue
            changed = self.store.update_key(key.id, {"blocked": True, "metadata": {
                **key.metadata, "blocked_by": "sso: left team " + key.team_id}})
            if changed is not None:
                blocked.append(changed)
                self.audit.write("key_blocked", **audit, key_id=key.id, team_id=key.team_id)
        return blocked
