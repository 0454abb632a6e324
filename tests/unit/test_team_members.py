"""Team memberships in the store (keys/members.py), on SQLite and PostgreSQL: the primary team stays one of the
user's teams through every change, keys are made only in a member's team, and leaving a team blocks its keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.pg import fresh_schema

from llm_gateway.db.engine import make_engine, upgrade
from llm_gateway.keys.members import exactly, move_primary
from llm_gateway.keys.store import NotAMember, Store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/m.db")
        upgrade(engine)
        yield Store(engine)
        engine.dispose()
        return
    with fresh_schema("test_members") as url:
        engine = make_engine(url)
        upgrade(engine)
        yield Store(engine)
        engine.dispose()


def test_a_users_team_id_is_its_first_membership_and_patch_moves_it(store: Store) -> None:
    _, ann = store.create_user({"id": "ann", "team_id": "red"})
    assert store.teams_of("ann") == ["red"] and ann.team_id == "red"
    store.change_teams("ann", exactly(["red", "blue"]), "admin")
    moved = store.update_user("ann", {"team_id": "green"})  # out of the primary team, into green
    assert moved is not None and moved.team_id == "green"
    assert store.teams_of("ann") == ["blue", "green"]
    cleared = store.update_user("ann", {"team_id": None})  # leaving the primary team: the next one is primary
    assert cleared is not None and cleared.team_id == "blue" and store.teams_of("ann") == ["blue"]
    assert [u.id for u in store.list_users(None, 10, "blue")] == ["ann"]
    assert store.teams_of_users(["ann", "nobody"]) == {"ann": ["blue"], "nobody": []}


def test_setting_teams_exactly_blocks_the_keys_of_teams_left(store: Store) -> None:
    store.create_user({"id": "bo", "team_id": "red"})
    _, red_key = store.create_key({"user_id": "bo", "team_id": "red"})
    _, blue_key = store.create_key({"user_id": "bo", "team_id": "blue"})
    joined = store.change_teams("bo", exactly(["red", "blue"], "blue"), "admin")
    assert joined is not None and (joined.primary, joined.teams, joined.joined, joined.left) == (
        "blue", ("blue", "red"), ("blue",), ())
    assert joined.blocked == ()
    left = store.change_teams("bo", exactly(["blue"]), "admin")
    assert left is not None and left.left == ("red",) and [k.id for k in left.blocked] == [red_key.id]
    assert left.blocked[0].metadata["blocked_by"] == "admin: left team red"
    assert store.get_key(red_key.id).blocked and not store.get_key(blue_key.id).blocked  # type: ignore[union-attr]
    none = store.change_teams("bo", exactly([]), "admin")
    assert none is not None and none.primary is None
    assert store.get_user("bo").team_id is None  # type: ignore[union-attr]
    assert store.change_teams("nobody", exactly(["red"]), "admin") is None


def test_a_key_is_made_only_in_one_of_the_users_teams(store: Store) -> None:
    store.create_user({"id": "cy", "team_id": "red"})
    store.change_teams("cy", move_primary("red"), "admin")  # no change: red stays the only team
    created = store.create_key_within_cap("cy", 5, {"team_id": "red"}, member=True)
    assert created is not None and created[1].team_id == "red"
    with pytest.raises(NotAMember, match="'blue'"):
        store.create_key_within_cap("cy", 5, {"team_id": "blue"}, member=True)
    assert store.count_keys("cy") == 1  # the refused one was not made
    assert store.create_key_within_cap("cy", 5, {"team_id": None}, member=True) is not None  # a key of no team


def test_deleting_a_team_or_a_user_ends_their_memberships(store: Store) -> None:
    store.create_team({"id": "red"})
    store.create_team({"id": "blue"})
    store.create_user({"id": "di", "team_id": "red"})
    store.change_teams("di", exactly(["red", "blue"]), "admin")
    assert store.delete_team("red") == []
    user = store.get_user("di")
    assert user is not None and user.team_id == "blue" and store.teams_of("di") == ["blue"]
    assert store.delete_user("di") == []
    assert store.teams_of("di") == [] and store.list_users(None, 10, "blue") == []
