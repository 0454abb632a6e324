"""Admin API for keys, users and teams (master key only), and self-service keys for users (their token)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Security

from llm_gateway.errors import BadRequest, GatewayError, NotFound
from llm_gateway.keys import members
from llm_gateway.keys.accounts import Accounts
from llm_gateway.keys.members import primary_first
from llm_gateway.keys.model import KeyRecord, UserRecord
from llm_gateway.keys.roles import USER, Identity, forbidden, require_key
from llm_gateway.keys.store import NotAMember, OwnerHasKeys, TeamsChanged
from llm_gateway.sso.audit import AuditLog

from .schemas import (
    ERRORS,
    Deleted,
    Id,
    Key,
    KeyInput,
    KeyList,
    KeyWithSpend,
    MyKeyInput,
    NewKey,
    NewUser,
    NewUserToken,
    Team,
    TeamChange,
    TeamDeleted,
    TeamInput,
    TeamList,
    User,
    UserChange,
    UserDeleted,
    UserInput,
    UserList,
    UserTeams,
    UserTeamsInput,
)
from .wire import (
    MASTER_SCHEME,
    USER_SCHEME,
    After,
    Auth,
    Limit,
    current_identity,
    current_user,
    key_fields,
    listing,
    out_of_range,
)


def _conflict(message: str) -> GatewayError:
    return GatewayError(message, status=409, type="invalid_request_error", code="conflict")


def with_teams(user: UserRecord, teams: list[str]) -> dict[str, Any]:
    return {**user.public(), "teams": primary_first(user.team_id, teams)}


class ResourcesApi:
    def __init__(self, accounts: Accounts, auth: Auth) -> None:
        self.accounts = accounts
        self.store = accounts.store
        self.auth = auth
        self.audit = AuditLog(accounts.engine)  # role changes (sso/audit.py)

    def routers(self) -> list[APIRouter]:
        """The admin routes (master key) and the self-service routes (a user's token)."""
        admin = APIRouter(prefix="/api/v1", responses=ERRORS,
                          dependencies=[Security(MASTER_SCHEME), Depends(self.auth.master)])
        add = admin.add_api_route
        add("/keys", self.create_key, methods=["POST"], status_code=201, response_model=NewKey, tags=["keys"])
        add("/keys", self.list_keys, methods=["GET"], response_model=KeyList, tags=["keys"])
        add("/keys/{id}", self.get_key, methods=["GET"], response_model=KeyWithSpend, tags=["keys"])
        add("/keys/{id}", self.update_key, methods=["PATCH"], response_model=Key, tags=["keys"])
        add("/keys/{id}", self.delete_key, methods=["DELETE"], response_model=Deleted, tags=["keys"])
        add("/keys/{id}/rotate", self.rotate_key, methods=["POST"], response_model=NewKey, tags=["keys"])
        add("/keys/{id}/block", self.block_key, methods=["POST"], response_model=Key, tags=["keys"])
        add("/keys/{id}/unblock", self.unblock_key, methods=["POST"], response_model=Key, tags=["keys"])
        add("/users", self.create_user, methods=["POST"], status_code=201, response_model=NewUser, tags=["users"])
        add("/users", self.list_users, methods=["GET"], response_model=UserList, tags=["users"])
        add("/users/{id}", self.get_user, methods=["GET"], response_model=User, tags=["users"])
        add("/users/{id}", self.update_user, methods=["PATCH"], response_model=User, tags=["users"])
        add("/users/{id}", self.delete_user, methods=["DELETE"], response_model=UserDeleted, tags=["users"])
        add("/users/{id}/token", self.rotate_user_token, methods=["POST"], response_model=NewUserToken,
            tags=["users"], summary="Replace the user's self-service token (the old one stops at once)")
        add("/users/{id}/teams", self.get_user_teams, methods=["GET"], response_model=UserTeams, tags=["users"],
            summary="The user's teams and its primary team")
        add("/users/{id}/teams", self.set_user_teams, methods=["PUT"], response_model=UserTeams, tags=["users"],
            summary="Set the user's teams (keys held through a team it leaves are blocked)")
        add("/teams", self.create_team, methods=["POST"], status_code=201, response_model=Team, tags=["teams"])
        add("/teams", self.list_teams, methods=["GET"], response_model=TeamList, tags=["teams"])
        add("/teams/{id}", self.get_team, methods=["GET"], response_model=Team, tags=["teams"])
        add("/teams/{id}", self.update_team, methods=["PATCH"], response_model=Team, tags=["teams"])
        add("/teams/{id}", self.delete_team, methods=["DELETE"], response_model=TeamDeleted, tags=["teams"])
        me = APIRouter(prefix="/api/v1/me", responses=ERRORS, tags=["self-service"],
                       dependencies=[Security(USER_SCHEME), Depends(self.auth.user)])
        me.add_api_route("/teams", self.my_teams, methods=["GET"], response_model=UserTeams,
                         summary="Your teams: a new key may be made in any of them")
        me.add_api_route("/token", self.rotate_my_token, methods=["POST"], response_model=NewUserToken,
                         summary="Replace your token (the one you send stops at once)")
        me.add_api_route("/keys", self.my_keys, methods=["GET"], response_model=KeyList, summary="Your keys")
        me.add_api_route("/keys", self.create_my_key, methods=["POST"], status_code=201, response_model=NewKey,
                         summary="Create one of your keys (capped per user, also under concurrency)")
        me.add_api_route("/keys/{id}", self.delete_my_key, methods=["DELETE"], response_model=Deleted,
                         summary="Delete one of your keys")
        return [admin, me]

    # -- keys
    async def create_key(self, body: KeyInput | None = None) -> dict[str, Any]:
        fields = key_fields((body or KeyInput()).model_dump(exclude_unset=True))
        if fields.get("user_id") and not fields.get("team_id"):
            user = await asyncio.to_thread(self.store.get_user, fields["user_id"])
            if user is not None and user.team_id:
                fields["team_id"] = user.team_id
        secret, key = await asyncio.to_thread(self.store.create_key, fields)
        self.accounts.put_key(key)
        return {**key.public(), "key": secret}

    async def list_keys(self, limit: Limit = 100, after: After = None, user_id: Annotated[Id | None, Query()] = None,
                        team_id: Annotated[Id | None, Query()] = None) -> dict[str, Any]:
        found = await asyncio.to_thread(self.store.list_keys, after, limit + 1, user_id=user_id, team_id=team_id)
        return listing([k.public() for k in found], limit)

    async def get_key(self, id: Id) -> dict[str, Any]:
        key = await asyncio.to_thread(self.store.get_key, id)
        if key is None:
            raise NotFound(f"no key {id!r}", code="key_not_found")
        out = key.public()
        budget = self.accounts.budgets.budgets.get(("key", key.id))
        out["spent_usd"] = round(budget.spent, 9) if budget is not None else None
        return out

    async def update_key(self, id: Id, body: KeyInput) -> dict[str, Any]:
        return (await self._change_key(id, key_fields(body.model_dump(exclude_unset=True)))).public()

    async def block_key(self, id: Id) -> dict[str, Any]:
        return (await self._change_key(id, {"blocked": True})).public()

    async def unblock_key(self, id: Id) -> dict[str, Any]:
        return (await self._change_key(id, {"blocked": False})).public()

    async def rotate_key(self, id: Id) -> dict[str, Any]:
        rotated = await asyncio.to_thread(self.store.rotate_key, id)
        if rotated is None:
            raise NotFound(f"no key {id!r}", code="key_not_found")
        secret, key, old_hash = rotated
        self.accounts.put_key(key, old_hash)
        return {**key.public(), "key": secret}

    async def delete_key(self, request: Request, id: Id) -> dict[str, Any]:
        await self.remove_key(current_identity(request), id)
        return {"id": id, "deleted": True}

    async def _change_key(self, key_id: str, changes: dict[str, Any]) -> KeyRecord:
        key = await asyncio.to_thread(self.store.update_key, key_id, changes)
        if key is None:
            raise NotFound(f"no key {key_id!r}", code="key_not_found")
        self.accounts.put_key(key)
        await self.accounts.budgets_loaded()  # a budget set now counts what the key spent in its period at once
        return key

    async def remove_key(self, identity: Identity, key_id: str) -> None:
        """Delete a key `identity` may manage (keys/roles.py); 404 for any other."""
        key = require_key(identity, await asyncio.to_thread(self.store.get_key, key_id), key_id)
        await asyncio.to_thread(self.store.delete_key, key_id)
        self.accounts.cache.evict(key.key_hash)

    # -- users
    async def create_user(self, body: UserInput | None = None) -> dict[str, Any]:
        fields = (body or UserInput()).model_dump(exclude_unset=True)
        if fields.get("id") and await asyncio.to_thread(self.store.get_user, fields["id"]) is not None:
            raise _conflict(f"user {fields['id']!r} exists")
        token, user = await asyncio.to_thread(self.store.create_user, fields)
        self.accounts.user_changed(user)
        if user.role != "user":
            await self.audit.awrite("role_change", method="admin", user_id=user.id, role=user.role, previous=None)
        if user.team_id:
            await self.audit.awrite("team_change", method="admin", user_id=user.id, joined=[user.team_id], left=[])
        return {**with_teams(user, [user.team_id] if user.team_id else []), "token": token}

    async def list_users(self, limit: Limit = 100, after: After = None, team_id: Annotated[Id | None, Query(
            description="the team's members (whichever of their teams is primary)")] = None) -> dict[str, Any]:
        found = await asyncio.to_thread(self.store.list_users, after, limit + 1, team_id)
        teams = await asyncio.to_thread(self.store.teams_of_users, [u.id for u in found[:limit]])
        return listing([with_teams(u, teams.get(u.id, [])) for u in found], limit)

    async def get_user(self, id: Id) -> dict[str, Any]:
        user = await self._user(id)
        return with_teams(user, await asyncio.to_thread(self.store.teams_of, id))

    async def _user(self, user_id: str) -> UserRecord:
        user = await asyncio.to_thread(self.store.get_user, user_id)
        if user is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        return user

    async def update_user(self, id: Id, body: UserChange) -> dict[str, Any]:
        changes = body.model_dump(exclude_unset=True)
        before = await self._user(id)
        role = before.role
        if "team_id" in changes:
            team = changes.pop("team_id")
            if team != before.team_id and (await self._change_teams(id, members.move_primary(team))).demoted:
                role = USER  # audited; a `role` in this change gives it again, for the new team
        user = await asyncio.to_thread(self.store.update_user, id, changes)
        if user is None:
            raise NotFound(f"no user {id!r}", code="user_not_found")
        self.accounts.user_changed(user)
        await self.accounts.budgets_loaded()
        if role != user.role:
            await self.audit.awrite("role_change", method="admin", user_id=id, role=user.role, previous=role)
        return with_teams(user, await asyncio.to_thread(self.store.teams_of, id))

    async def rotate_user_token(self, id: Id) -> dict[str, Any]:
        return await self._rotate_token(id, "admin")

    async def rotate_my_token(self, request: Request) -> dict[str, Any]:
        return await self._rotate_token(current_user(request).id, "user_token")

    async def _rotate_token(self, user_id: str, method: str) -> dict[str, Any]:
        token = await asyncio.to_thread(self.store.rotate_user_token, user_id)
        if token is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        await self.audit.awrite("token_rotated", method=method, user_id=user_id)
        return {"user_id": user_id, "token": token}

    async def get_user_teams(self, id: Id) -> dict[str, Any]:
        user = await self._user(id)
        teams = await asyncio.to_thread(self.store.teams_of, id)
        return {"user_id": id, "team_id": user.team_id, "teams": primary_first(user.team_id, teams)}

    async def set_user_teams(self, id: Id, body: UserTeamsInput) -> dict[str, Any]:
        """The user's teams become exactly `teams`; the user leaves the others, and the keys it holds through them
        are blocked at once. SSO sign-ins manage the teams of `sso.group_mapping` and leave the others alone."""
        wanted = list(dict.fromkeys(body.teams))
        if body.team_id is not None and body.team_id not in wanted:
            raise out_of_range("team_id must be one of teams", "team_id")
        missing = set(wanted) - await asyncio.to_thread(self.store.existing_teams, wanted)
        if missing:
            raise out_of_range(f"no team {sorted(missing)[0]!r}", "teams")
        await self._user(id)
        changed = await self._change_teams(id, members.exactly(wanted, body.team_id))
        return {"user_id": id, "team_id": changed.primary, "teams": list(changed.teams),
                "blocked_keys": [k.id for k in changed.blocked]}

    async def _change_teams(self, user_id: str, plan: members.Plan) -> TeamsChanged:
        changed = await asyncio.to_thread(self.store.change_teams, user_id, plan, "admin")
        if changed is None:
            raise NotFound(f"no user {user_id!r}", code="user_not_found")
        for key in changed.blocked:
            self.accounts.put_key(key)
        if changed.joined or changed.left:
            await self.audit.awrite("team_change", method="admin", user_id=user_id, joined=sorted(changed.joined),
                                    left=sorted(changed.left))
        for key in changed.blocked:
            await self.audit.awrite("key_blocked", method="admin", user_id=user_id, key_id=key.id,
                                    team_id=key.team_id)
        if changed.demoted:  # the team-admin role stays with the team it was given for (keys/members.py)
            await self.audit.awrite("role_change", method="admin", user_id=user_id, **changed.demotion())
        return changed

    async def delete_user(self, id: Id, cascade: Annotated[bool, Query(
            description="also delete the user's keys; without it a user that holds keys is kept (409)")] = False,
    ) -> dict[str, Any]:
        """Delete a user. Its usage stays in the ledger (reports still show it)."""
        return await self._delete_owner("user", id, cascade, self.store.delete_user)

    async def _delete_owner(self, kind: str, owner_id: str, cascade: bool,
                            delete: Callable[[str, bool], list[KeyRecord] | None]) -> dict[str, Any]:
        """Delete a user or a team (`kind`) and, with `cascade`, its keys, which stop at once on this replica;
        409 `<kind>_has_keys` while it has keys and no `cascade`. Its budget is forgotten."""
        try:
            revoked = await asyncio.to_thread(delete, owner_id, cascade)
        except OwnerHasKeys as err:
            raise GatewayError(f"{kind} {owner_id!r} has {err.count} key(s): delete or move them first, or pass "
                               f"cascade=true to delete them with the {kind}", status=409,
                               type="invalid_request_error", code=f"{kind}_has_keys") from None
        if revoked is None:
            raise NotFound(f"no {kind} {owner_id!r}", code=f"{kind}_not_found")
        for key in revoked:
            self.accounts.cache.evict(key.key_hash)
        self.accounts.budgets.configure(kind, owner_id, None, "total")
        return {"id": owner_id, "deleted": True, "revoked_keys": len(revoked)}

    # -- teams
    async def create_team(self, body: TeamInput | None = None) -> dict[str, Any]:
        fields = (body or TeamInput()).model_dump(exclude_unset=True)
        if fields.get("id") and await asyncio.to_thread(self.store.get_team, fields["id"]) is not None:
            raise _conflict(f"team {fields['id']!r} exists")
        team = await asyncio.to_thread(self.store.create_team, fields)
        self.accounts.team_changed(team)
        return team.public()

    async def list_teams(self, limit: Limit = 100, after: After = None) -> dict[str, Any]:
        found = await asyncio.to_thread(self.store.list_teams, after, limit + 1)
        return listing([t.public() for t in found], limit)

    async def get_team(self, id: Id) -> dict[str, Any]:
        team = await asyncio.to_thread(self.store.get_team, id)
        if team is None:
            raise NotFound(f"no team {id!r}", code="team_not_found")
        return team.public()

    async def update_team(self, id: Id, body: TeamChange) -> dict[str, Any]:
        team = await asyncio.to_thread(self.store.update_team, id, body.model_dump(exclude_unset=True))
        if team is None:
            raise NotFound(f"no team {id!r}", code="team_not_found")
        self.accounts.team_changed(team)
        await self.accounts.budgets_loaded()
        return team.public()

    async def delete_team(self, id: Id, cascade: Annotated[bool, Query(
            description="also delete the team's keys; without it a team that has keys is kept (409)")] = False,
    ) -> dict[str, Any]:
        """Delete a team. Its keys would go on without the team's budget, guardrails and policies, so a team that
        has keys is deleted only with `cascade`, which deletes them too. Its usage stays in the ledger."""
        demoted: list[str] = []
        deleted = await self._delete_owner("team", id, cascade, partial(self.store.delete_team, demoted=demoted))
        self.accounts.team_guardrails.pop(id, None)
        for user_id in demoted:  # its team admins whose primary team it was
            await self.audit.awrite("role_change", method="admin", user_id=user_id,
                                    **members.demotion(f"team {id} deleted"))
        return deleted

    # -- self-service: a user manages its own keys with its user token
    async def my_keys(self, request: Request, limit: Limit = 100, after: After = None) -> dict[str, Any]:
        user = current_user(request)
        found = await asyncio.to_thread(self.store.list_keys, after, limit + 1, user_id=user.id)
        return listing([k.public() for k in found], limit)

    async def my_teams(self, request: Request) -> dict[str, Any]:
        user = current_user(request)
        teams = await asyncio.to_thread(self.store.teams_of, user.id)
        return {"user_id": user.id, "team_id": user.team_id, "teams": primary_first(user.team_id, teams)}

    async def create_my_key(self, request: Request, body: MyKeyInput | None = None) -> dict[str, Any]:
        """A key in the team the user names (one of its teams: 403 otherwise) or in its primary team."""
        user = current_user(request)
        fields = key_fields((body or MyKeyInput()).model_dump(exclude_unset=True))
        if fields.get("team_id") is None:
            fields["team_id"] = user.team_id
        cap = user.max_keys if user.max_keys is not None else self.accounts.config.auth.max_keys_per_user
        try:
            created = await asyncio.to_thread(self.store.create_key_within_cap, user.id, cap, fields, True)
        except NotAMember as err:
            raise forbidden(str(err), code="not_a_member", param="team_id") from None
        if created is None:
            raise BadRequest(f"you already have {cap} key(s), the most allowed: delete one first",
                             code="key_limit_reached")
        secret, key = created
        self.accounts.put_key(key)
        return {**key.public(), "key": secret}

    async def delete_my_key(self, request: Request, id: Id) -> dict[str, Any]:
        await self.remove_key(current_identity(request), id)
        return {"id": id, "deleted": True}
