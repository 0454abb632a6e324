"""GroupSync on a real SQLite store: mapping order, admin role, hand-set teams left alone, keys of a left team
blocked (and only those), audit rows for each change."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_gateway.db.engine import Timeouts, make_engine, upgrade
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
    assert run(sync, ["data-team"]).user.team_id == "hand_set"  # type: ignore[attr-defined]


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
