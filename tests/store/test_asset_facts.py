"""The asset facts role: the latest value of what dyzur learnt about an asset."""

from __future__ import annotations

from datetime import timedelta

from tests.conftest import START


def test_asset_facts_keep_the_latest_value_and_say_when_it_changed(store):
    assert store.set_asset_fact("amms-1", "amms_version", "7.3.1", START)
    assert not store.set_asset_fact("amms-1", "amms_version", "7.3.1", START)
    assert store.set_asset_fact("amms-1", "amms_version", "7.4.0", START)
    assert store.asset_facts() == {"amms-1": {"amms_version": "7.4.0"}}


def test_asset_facts_are_per_asset_and_key(store):
    assert store.asset_facts() == {}
    store.set_asset_fact("amms-2", "amms_version", "7.3.1", START)
    store.set_asset_fact("amms-1", "amms_version", "7.4.0", START)
    assert store.set_asset_fact("amms-1", "os", "debian-12", START + timedelta(hours=1))
    assert store.asset_facts() == {
        "amms-1": {"amms_version": "7.4.0", "os": "debian-12"},
        "amms-2": {"amms_version": "7.3.1"},
    }
