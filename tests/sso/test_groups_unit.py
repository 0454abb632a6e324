"""GroupSync on a real SQLite store: mapping order, admin role, hand-set teams left alone, several mapped groups
giving several teams, keys of a left team blocked (and only those), the primary team, audit rows for each change."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.db.engine import Timeouts, make_engine, upgrade
from llm_gateway.keys.members import exactly
from llm_gateway.keys.store import Store
from llm_gateway.sso.audit import AuditLog
from llm_gateway.sso.groups import GroupSync, groups_of, user_id_for
from llm_gateway.sso.saml import weak_algorithms

MAPPING = {"llm-admins": "admin", "data-team": "team_data", "ml-team": "team_ml"}


@pytest.fixture
def sync(tmp_path: Path) -> GroupSync:
    engine = make_engine(f"sqlite:///{tmp_path}/g.db", Timeouts(5, 30))
    upgrade(engine)
    return GroupSync(MAPPING, Store(engine), AuditLog(engine))


def run(sync: GroupSync, groups: list[str], sub: str = "ann") -> object:
    return sync.sync(issuer="https://idp", subject=sub, groups=groups, method="oidc", provider="corp",
                     email=f"{sub}@example.com")


def test_teams_follow_the_mappings_order_and_admin_is_a_role(sync: GroupSync) -> None:
    assert sync.targets(["ml-team", "data-team", "llm-admins", "other"]) == (True, ("team_data", "team_ml"))
    first = run(sync, ["ml-team", "data-team", "llm-admins"])
    assert first.user.team_id == "team_data" and first.admin  # type: ignore[attr-defined]
    assert "admin" in first.identity().roles  # type: ignore[attr-defined]
    assert first.user.id == user_id_for("https://idp/", "ann")  # type: ignore[attr-defined]


def test_leaving_a_group_blocks_only_that_teams_keys(sync: GroupSync) -> None:
    synced = run(sync, ["data-team"])
    uid = synced.user.id  # type: ignore[attr-defined]
    _, data_key = sync.store.create_key({"user_id": uid, "team_id": "team_data"})
    _, own_key = sync.store.create_key({"user_id": uid, "team_id": None})
    _, other_key = sync.store.create_key({"user_id": uid, "team_id": "hand_set"})
    after = run(sync, ["ml-team"])
    assert after.user.team_id == "team_ml"  # type: ignore[attr-defined]
    assert [k.id for k in after.blocked] == [data_key.id]  # type: ignore[attr-defined]
    assert sync.store.get_key(data_key.id).blocked  # type: ignore[union-attr]
    assert not sync.store.get_key(own_key.id).blocked  # type: ignore[union-attr]
    assert not sync.store.get_key(other_key.id).blocked  # type: ignore[union-attr]
    events = [row["event"] for row in sync.audit.list(user_id=uid)]
    assert events.count("team_change") == 2 and "key_blocked" in events


def test_a_hand_set_team_outside_the_mapping_stays(sync: GroupSync) -> None:
    uid = run(sync, []).user.id  # type: ignore[attr-defined]
    sync.store.update_user(uid, {"team_id": "hand_set"})
    synced = run(sync, ["data-team"])
    assert synced.user.team_id == "hand_set"  # type: ignore[attr-defined]
    assert synced.teams == ("hand_set", "team_data")  # type: ignore[attr-defined]


def test_role_changes_are_audited(sync: GroupSync) -> None:
    uid = run(sync, ["llm-admins"]).user.id  # type: ignore[attr-defined]
    assert not run(sync, []).admin  # type: ignore[attr-defined]
    changes = [r["detail"]["change"] for r in sync.audit.list(user_id=uid, event="role_change")]
    assert changes == ["revoked", "granted"]


def test_groups_claim_shapes() -> None:
    assert groups_of({"g": "one"}, "g") == ["one"]
    assert groups_of({"g": ["a", 3, "b"]}, "g") == ["a", "b"]
    assert groups_of({"g": {"a": 1}}, "g") == [] and groups_of({}, "g") == []


def test_weak_algorithms_are_found() -> None:
    ds = "http://www.w3.org/2000/09/xmldsig#"
    xml = (f'<r xmlns:ds="{ds}"><ds:Signature><ds:SignedInfo><ds:SignatureMethod Algorithm="{ds}rsa-sha1"/>'
           f'<ds:Reference><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/></ds:Reference>'
           f"</ds:SignedInfo></ds:Signature></r>").encode()
    assert weak_algorithms(xml) == [f"{ds}rsa-sha1"]
    with pytest.raises(Exception):  # noqa: B017  (defusedxml refuses entity declarations)
        weak_algorithms(b'<!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>')


def test_two_mapped_groups_give_two_teams_and_leaving_one_blocks_only_its_keys(sync: GroupSync) -> None:
    both = run(sync, ["ml-team", "data-team"], sub="fay")
    uid = both.user.id  # type: ignore[attr-defined]
    assert both.teams == ("team_data", "team_ml") and both.user.team_id == "team_data"  # type: ignore[attr-defined]
    assert sync.store.teams_of(uid) == ["team_data", "team_ml"]
    assert [u.id for u in sync.store.list_users(None, 10, "team_ml")] == [uid]
    _, data_key = sync.store.create_key({"user_id": uid, "team_id": "team_data"})
    _, ml_key = sync.store.create_key({"user_id": uid, "team_id": "team_ml"})
    after = run(sync, ["ml-team"], sub="fay")
    assert after.teams == ("team_ml",) and after.user.team_id == "team_ml"  # type: ignore[attr-defined]
    assert [k.id for k in after.blocked] == [data_key.id]  # type: ignore[attr-defined]
    assert sync.store.get_key(data_key.id).blocked  # type: ignore[union-attr]
    assert not sync.store.get_key(ml_key.id).blocked  # type: ignore[union-attr]
    assert sync.store.list_users(None, 10, "team_data") == []
    changes = [r["detail"] for r in sync.audit.list(user_id=uid, event="team_change")]
    assert changes == [{"joined": [], "left": ["team_data"]}, {"joined": ["team_data", "team_ml"], "left": []}]
    blocked = [r["detail"] for r in sync.audit.list(user_id=uid, event="key_blocked")]
    assert blocked == [{"key_id": data_key.id, "team_id": "team_data"}]
    assert run(sync, ["ml-team"], sub="fay").blocked == ()  # type: ignore[attr-defined]  # nothing more to do


def test_the_primary_team_stays_while_the_user_is_in_it(sync: GroupSync) -> None:
    uid = run(sync, ["data-team", "ml-team"], sub="gil").user.id  # type: ignore[attr-defined]
    changed = sync.store.change_teams(uid, exactly(["team_data", "team_ml"], "team_ml"), "admin")
    assert changed is not None and changed.primary == "team_ml" and changed.teams == ("team_ml", "team_data")
    assert run(sync, ["data-team", "ml-team"], sub="gil").user.team_id == "team_ml"  # type: ignore[attr-defined]


def test_a_membership_an_admin_gave_outside_the_mapping_stays(sync: GroupSync) -> None:
    uid = run(sync, ["data-team"], sub="hal").user.id  # type: ignore[attr-defined]
    sync.store.change_teams(uid, exactly(["team_data", "hand_set"]), "admin")
    gone = run(sync, [], sub="hal")
    assert gone.teams == ("hand_set",) and gone.user.team_id == "hand_set"  # type: ignore[attr-defined]
    back = run(sync, ["ml-team"], sub="hal")
    assert set(back.teams) == {"hand_set", "team_ml"}  # type: ignore[attr-defined]
    assert back.user.team_id == "hand_set"  # type: ignore[attr-defined]


def test_an_sso_team_admin_keeps_the_role(sync: GroupSync) -> None:
    uid = run(sync, ["data-team"], sub="ida").user.id  # type: ignore[attr-defined]
    sync.store.update_user(uid, {"role": "team_admin"})
    identity = run(sync, ["data-team"], sub="ida").identity()  # type: ignore[attr-defined]
    assert identity.is_team_admin and identity.team_id == "team_data"


def test_a_team_admin_who_leaves_its_team_is_no_admin_of_the_next(sync: GroupSync) -> None:
    uid = run(sync, ["data-team", "ml-team"], sub="ian").user.id  # type: ignore[attr-defined]
    sync.store.update_user(uid, {"role": "team_admin"})  # of team_data, its primary team
    identity = run(sync, ["ml-team"], sub="ian").identity()  # type: ignore[attr-defined]
    assert identity.team_id == "team_ml" and not identity.is_team_admin
    assert sync.store.get_user(uid).role == "user"  # type: ignore[union-attr]
    changes = sync.audit.list(user_id=uid, event="role_change")
    assert [(c["detail"]["role"], c["detail"]["previous"], c["detail"]["reason"]) for c in changes] == [
        ("user", "team_admin", "primary team changed to team_ml")]
