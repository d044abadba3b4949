"""Table-driven tests of cloud.routing: subspecialty, shift/time zone, workload, shared pool, priority, SLA."""
from __future__ import annotations

import datetime as dt

import pytest

from cloud.config import ConfigError, hash_password, load_config, parse_config
from cloud.routing import StudyFacts, deadline, route, subspecialty_for, ups_priority

H = hash_password("x", salt=b"0123456789abcdef")
UTC = dt.UTC

# Readers in three time zones. Shifts are local time.
CONFIG = parse_config({
    "users": {
        "ana": {"password_hash": H, "subspecialties": ["neuro"], "timezone": "Europe/Berlin",
                "shifts": [{"days": "mon-fri", "start": "08:00", "end": "16:00"}]},
        "bo": {"password_hash": H, "subspecialties": ["neuro", "body"], "timezone": "Asia/Seoul",
               "shifts": [{"days": "all", "start": "22:00", "end": "06:00"}]},       # overnight in Seoul
        "cy": {"password_hash": H, "subspecialties": ["msk", "chest"], "timezone": "America/New_York",
               "shifts": [{"days": ["sat", "sun"], "start": "00:00", "end": "24:00"}]},
        "dee": {"password_hash": H, "subspecialties": ["msk"], "timezone": "UTC",
                "shifts": [{"days": "all"}]},
        "qa": {"password_hash": H, "roles": ["qa"], "subspecialties": ["neuro"], "shifts": [{"days": "all"}]},
    },
    "subspecialty_rules": [
        {"subspecialty": "neuro", "modalities": ["CT", "MR"], "body_parts": ["HEAD", "BRAIN"],
         "description_words": ["HEAD"]},
        {"subspecialty": "msk", "modalities": ["CR", "DX"], "body_parts": ["WRIST", "HAND"]},
        {"subspecialty": "chest", "modalities": ["CR", "DX"], "body_parts": ["CHEST"]},
        {"subspecialty": "body", "modalities": ["CT", "US"], "body_parts": ["ABDOMEN", "PELVIS"]},
        {"subspecialty": "peds", "modalities": ["MG"]},
    ],
    "sla_minutes": {"STAT": 20, "ROUTINE": 120},
})

# 2026-12-02 is a Wednesday.
WED_0900_UTC = dt.datetime(2026, 12, 2, 9, 0, tzinfo=UTC)      # Berlin 10:00 (ana on), Seoul 18:00 (bo off)
WED_1400_UTC = dt.datetime(2026, 12, 2, 14, 0, tzinfo=UTC)     # Berlin 15:00 (on), Seoul 23:00 (bo on)
WED_1600_UTC = dt.datetime(2026, 12, 2, 16, 0, tzinfo=UTC)     # Berlin 17:00 (off), Seoul 01:00 Thu (bo on)
WED_1000_UTC = dt.datetime(2026, 12, 2, 10, 0, tzinfo=UTC)     # Berlin 11:00, Seoul 19:00: only ana
SAT_0300_UTC = dt.datetime(2026, 12, 5, 3, 0, tzinfo=UTC)      # NY Fri 22:00 (cy off), Seoul Sat 12:00
SAT_1200_UTC = dt.datetime(2026, 12, 5, 12, 0, tzinfo=UTC)     # NY Sat 07:00 (cy on)


def facts(mod, part="", desc="", prio=""):
    return StudyFacts("1.2.3", frozenset({mod}), frozenset({part} if part else ()), desc, prio)


@pytest.mark.parametrize("study, now, workload, reader, sub, why", [
    # subspecialty
    (facts("CT", "HEAD"), WED_0900_UTC, {}, "ana", "neuro", "neuro reader on shift in Berlin"),
    (facts("CT", "", "CT HEAD WO"), WED_0900_UTC, {}, "ana", "neuro", "body part from the description"),
    (facts("DX", "CHEST"), SAT_1200_UTC, {}, "cy", "chest", "chest only cy, on shift Saturday in New York"),
    (facts("CT", "ABDOMEN"), WED_1600_UTC, {}, "bo", "body", "body: bo on his overnight shift"),
    # time zone / shift
    (facts("CT", "HEAD"), WED_1600_UTC, {}, "bo", "neuro", "ana off at 17:00 Berlin, bo on 01:00 Seoul"),
    (facts("CT", "ABDOMEN"), WED_1000_UTC, {}, None, "body", "bo off at 19:00 Seoul: shared pool"),
    (facts("DX", "CHEST"), SAT_0300_UTC, {}, None, "chest", "cy's Saturday has not begun in New York"),
    # workload
    (facts("CT", "HEAD"), WED_1400_UTC, {"ana": 3, "bo": 1}, "bo", "neuro", "both on; bo has fewer open"),
    (facts("CT", "HEAD"), WED_1400_UTC, {"ana": 1, "bo": 3}, "ana", "neuro", "both on; ana has fewer open"),
    (facts("CT", "HEAD"), WED_1400_UTC, {}, "ana", "neuro", "tie broken by name"),
    (facts("DX", "WRIST"), SAT_1200_UTC, {"cy": 2, "dee": 5}, "cy", "msk", "msk: lowest workload"),
    # nobody qualifies
    (facts("MG", "BREAST"), WED_0900_UTC, {}, None, "peds", "no reader has the subspecialty"),
    (facts("XA", "HEART"), WED_0900_UTC, {}, None, None, "no rule matches"),
    (facts("SR"), WED_0900_UTC, {}, None, None, "reports are not images to read"),
])
def test_route_table(study, now, workload, reader, sub, why):
    d = route(study, CONFIG, now, workload)
    assert (d.reader, d.subspecialty) == (reader, sub), why


def test_qa_user_is_never_assigned_even_with_a_matching_subspecialty():
    d = route(facts("CT", "HEAD"), CONFIG, WED_1000_UTC, {"ana": 100})
    assert d.reader == "ana"


@pytest.mark.parametrize("requested, desc, expected", [
    ("STAT", "", "HIGH"), ("stat", "", "HIGH"), ("HIGH", "", "HIGH"), ("", "CT HEAD STAT", "HIGH"),
    ("ROUTINE", "", "MEDIUM"), ("", "", "MEDIUM"), ("MEDIUM", "", "MEDIUM"), ("LOW", "", "LOW"),
    ("ROUTINE", "STATUS POST FALL", "MEDIUM"),
])
def test_priority(requested, desc, expected):
    assert ups_priority(requested, desc) == expected


def test_deadline_uses_the_configured_sla():
    assert CONFIG.sla_minutes == {"HIGH": 20, "MEDIUM": 120, "LOW": 1440}
    assert deadline(WED_0900_UTC, "HIGH", CONFIG.sla_minutes) - WED_0900_UTC == dt.timedelta(minutes=20)
    assert deadline(WED_0900_UTC, "MEDIUM", CONFIG.sla_minutes) - WED_0900_UTC == dt.timedelta(hours=2)


def test_demo_config_routes_demo_studies_to_demo_readers_at_any_hour():
    demo = load_config(None)
    for hour in range(0, 24, 5):
        now = dt.datetime(2026, 12, 4, hour, 30, tzinfo=UTC)
        assert route(facts("CT", "HEAD"), demo, now, {}).reader == "reader2"
        assert route(facts("CT", "ABDOMEN"), demo, now, {}).reader == "reader2"
        assert route(facts("DX", "CHEST"), demo, now, {}).reader == "reader1"
        assert route(facts("CR", "", "XR WRIST 3 VIEWS"), demo, now, {}).reader == "reader1"
        assert route(facts("US", "ABDOMEN"), demo, now, {}).reader == "reader2"
    assert subspecialty_for(facts("DX", "HAND"), demo.rules) == "msk"


@pytest.mark.parametrize("bad, words", [
    ({"users": {"a": {}}}, "password_hash"),
    ({"users": {"a": {"password_hash": "plain"}}}, "scrypt"),
    ({"users": {"a": {"password_hash": H, "timezone": "Mars/Base"}}}, "time zone"),
    ({"users": {"a": {"password_hash": H, "shifts": [{"start": "25:00"}]}}}, "HH:MM"),
    ({"users": {"a": {"password_hash": H, "shifts": [{"days": "someday"}]}}}, "unknown day"),
    ({"sla_minutes": {"URGENT": 5}}, "sla_minutes"),
    ({"tls": {"certificate": "x.pem"}}, "both"),
])
def test_config_errors_name_the_problem(bad, words):
    with pytest.raises(ConfigError, match=words):
        parse_config(bad)


@pytest.mark.parametrize("mods, study_date, max_days, expected", [
    ({"CT"}, "20261201", 365, True),
    ({"DX"}, "20241201", 365, False),          # a prior from two years ago, sent for comparison
    ({"DX"}, "20241201", None, True),          # no age limit configured
    ({"DX"}, "", 365, True),                   # unknown date: route it
    ({"SR"}, "20261201", None, False),         # reports only
    ({"SR", "KO", "CT"}, "20261201", None, True),
])
def test_is_reading_task(mods, study_date, max_days, expected):
    from cloud.routing import is_reading_task

    conf = parse_config({"max_study_age_days": max_days} if max_days else {})
    f = StudyFacts("1.2", frozenset(mods), frozenset(), "", "", study_date)
    assert is_reading_task(f, conf, WED_0900_UTC) is expected
