"""Who may do what: one identity shape and one set of rules, used by the admin API and the dashboard alike.

An identity comes from the master key (admin), a user's token (user, or team admin when the user's role says so),
or a dashboard sign-in method (ui/session.py: any method ends in the same `Identity`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from llm_gateway.errors import GatewayError, NotFound
from llm_gateway.keys.model import KeyRecord, UserRecord

ADMIN, TEAM_ADMIN, USER = "admin", "team_admin", "user"
ROLES = (ADMIN, TEAM_ADMIN, USER)


@dataclass(frozen=True, slots=True)
class Identity:
    subject: str  # "master", a user id, or an identity provider's subject
    roles: frozenset[str]
    user_id: str | None = None  # the gateway user it acts as (a user's keys and usage)
    team_id: str | None = None  # its user's primary team (a team admin manages it; keys/members.py)
    name: str = ""

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    @property
    def is_team_admin(self) -> bool:
        return TEAM_ADMIN in self.roles and self.team_id is not None


MASTER = Identity("master", frozenset({ADMIN}), name="admin")


def of_user(user: UserRecord) -> Identity:
    roles = {USER, TEAM_ADMIN} if user.role == TEAM_ADMIN and user.team_id else {USER}
    return Identity(user.id, frozenset(roles), user_id=user.id, team_id=user.team_id, name=user.email or user.id)


def of_sso_user(user: UserRecord) -> Identity:
    """A user signed in through single sign-on: its own roles, and admin while the IdP groups of its latest sign-in
    (or bearer token) map to admin; sso/groups.py keeps them in `metadata["sso"]`."""
    sso = user.metadata.get("sso") or {}
    identity = of_user(user)
    roles = identity.roles | {ADMIN} if sso.get("admin") else identity.roles
    return replace(identity, roles=frozenset(roles), name=user.email or str(sso.get("name") or user.id))


def forbidden(message: str, code: str = "forbidden", param: str | None = None) -> GatewayError:
    return GatewayError(message, status=403, type="permission_error", code=code, param=param)


def require_admin(identity: Identity) -> None:
    if not identity.is_admin:
        raise forbidden("this needs an admin")


def key_scope(identity: Identity) -> dict[str, str]:
    """The store filters that select the keys `identity` may see."""
    if identity.is_admin:
        return {}
    if identity.is_team_admin:
        assert identity.team_id is not None
        return {"team_id": identity.team_id}
    return {"user_id": identity.user_id or ""}


def may_manage_key(identity: Identity, key: KeyRecord) -> bool:
    return all(getattr(key, field) == value for field, value in key_scope(identity).items())


def require_key(identity: Identity, key: KeyRecord | None, key_id: str) -> KeyRecord:
    """The key when `identity` may see and change it; otherwise 404, as for a key that does not exist."""
    if key is None or not may_manage_key(identity, key):
        raise NotFound(f"no key {key_id!r}", code="key_not_found")
    return key


def may_see_user(identity: Identity, user_id: str, teams: list[str]) -> bool:
    """Admins see every user, a team admin the members of its team (`teams`: the user's teams), a user itself."""
    return identity.is_admin or identity.user_id == user_id or (identity.is_team_admin and identity.team_id in teams)


def user_keys_scope(identity: Identity, user_id: str) -> dict[str, str]:
    """The store filters for the keys of user `user_id` that `identity` (allowed to see the user) may see: a team
    admin sees only those of its team, not the member's keys in other teams."""
    if identity.is_admin or identity.user_id == user_id:
        return {"user_id": user_id}
    return {"user_id": user_id, "team_id": identity.team_id or ""}


def require_team(identity: Identity, team_id: str | None) -> None:
    """Admins manage every team, team admins their own."""
    if identity.is_admin or (identity.is_team_admin and team_id == identity.team_id):
        return
    raise forbidden("you may only manage your own team")


def require_key_holder(identity: Identity, user_id: str, teams: list[str]) -> None:
    """Whom a key `identity` makes may be given to (`teams`: that user's teams). The key's user is charged for it
    and shown as its spender, so a team admin may name only the members of its team; admins anyone."""
    if may_see_user(identity, user_id, teams):  # the same people: themselves, or (team admins) their members
        return
    raise forbidden(f"user {user_id!r} is not a member of your team {identity.team_id!r}", code="not_a_member",
                    param="user_id")


def usage_scope(identity: Identity) -> tuple[str, str] | None:
    """The usage `identity` may see, as a rollup dimension and value (None: everything)."""
    if identity.is_admin:
        return None
    if identity.is_team_admin:
        assert identity.team_id is not None
        return ("team", identity.team_id)
    return ("user", identity.user_id or "")
