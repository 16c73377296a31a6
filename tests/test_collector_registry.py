"""Collectors are found by kind; mistakes are named."""

from __future__ import annotations

import pytest

from collectors import CollectorConfigError
from collectors.registry import BUILTIN, build_collectors, collector_class


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(
        CollectorConfigError, match=r"unknown collector kind 'snmpp' \(built in: host"
    ):
        collector_class("snmpp")


def test_a_missing_library_names_the_extra_to_install(monkeypatch):
    monkeypatch.setitem(BUILTIN, "ups", "collectors.not_installed_here:UpsCollector [snmp]")
    with pytest.raises(CollectorConfigError) as info:
        collector_class("ups")
    assert str(info.value) == (
        "collector 'ups' needs collectors.not_installed_here: pip install 'dyzur[snmp]'"
    )


def test_duplicate_collector_names_are_refused():
    with pytest.raises(CollectorConfigError, match="duplicate collector name 'host'"):
        build_collectors([("host", "host", {}), ("host", "host", {})])


def test_unknown_options_are_named():
    with pytest.raises(CollectorConfigError, match=r"^host: .*exclude_fstype"):
        build_collectors([("host", "host", {"exclude_fstype": ["nfs"]})])
