"""Routing: which reader a newly arrived study is assigned to, its priority and its deadline.

Owns the rules of issue 2 section 5, as pure functions over values (no I/O), so they are table-tested:
subspecialty from modality + body part (first matching rule in the config), then readers with that
subspecialty who are on shift now in their own time zone, then the lowest open workload (ties by name).
If nobody qualifies the study goes to the shared pool (no performer). Priority: STAT (in
RequestedProcedurePriority or the study description) -> HIGH; deadline = now + the priority's SLA.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re

from cloud.config import CloudConfig, SubspecialtyRule

NON_IMAGE_MODALITIES = frozenset({"SR", "PR", "KO", "DOC", "REG", "SEG", "RWV", "AU"})


@dataclasses.dataclass(frozen=True)
class StudyFacts:
    """What routing needs to know about a study (read from Orthanc's index)."""
    study_uid: str
    modalities: frozenset[str]
    body_parts: frozenset[str]
    description: str = ""
    requested_priority: str = ""
    study_date: str = ""           # DICOM DA; empty = unknown


@dataclasses.dataclass(frozen=True)
class RoutingDecision:
    priority: str                  # UPS ScheduledProcedureStepPriority: HIGH | MEDIUM | LOW
    subspecialty: str | None
    reader: str | None             # None = shared pool
    reason: str                    # for the service log; never patient data


def ups_priority(requested_priority: str | None, description: str | None) -> str:
    rp = (requested_priority or "").strip().upper()
    if rp in ("STAT", "HIGH") or re.search(r"\bSTAT\b", (description or "").upper()):
        return "HIGH"
    if rp == "LOW":
        return "LOW"
    return "MEDIUM"


def deadline(now_utc: dt.datetime, priority: str, sla_minutes: dict[str, int]) -> dt.datetime:
    return now_utc + dt.timedelta(minutes=sla_minutes.get(priority, sla_minutes.get("MEDIUM", 240)))


def subspecialty_for(facts: StudyFacts, rules: tuple[SubspecialtyRule, ...]) -> str | None:
    mods = {m.upper() for m in facts.modalities} - NON_IMAGE_MODALITIES
    parts = {re.sub(r"[^A-Z]", "", p.upper()) for p in facts.body_parts if p}
    for rule in rules:
        if rule.matches(mods, parts, facts.description or ""):
            return rule.subspecialty
    return None


def is_reading_task(facts: StudyFacts, config: CloudConfig, now_utc: dt.datetime) -> bool:
    """False for studies that are no work: only reports/presentation states, or older than
    ``max_study_age_days`` (priors a clinic sends along for comparison)."""
    if not ({m.upper() for m in facts.modalities} - NON_IMAGE_MODALITIES):
        return False
    if config.max_study_age_days and re.fullmatch(r"\d{8}", facts.study_date or ""):
        try:
            when = dt.datetime.strptime(facts.study_date, "%Y%m%d").replace(tzinfo=dt.UTC)
        except ValueError:
            return True
        return now_utc - when <= dt.timedelta(days=config.max_study_age_days + 1)
    return True


def route(facts: StudyFacts, config: CloudConfig, now_utc: dt.datetime,
          open_workload: dict[str, int]) -> RoutingDecision:
    """Decide priority and performer. ``open_workload`` = SCHEDULED + IN PROGRESS items per reader."""
    priority = ups_priority(facts.requested_priority, facts.description)
    sub = subspecialty_for(facts, config.rules)
    if sub is None:
        return RoutingDecision(priority, None, None, "no subspecialty rule matched: shared pool")
    qualified = [u for u in config.readers() if sub in u.subspecialties]
    if not qualified:
        return RoutingDecision(priority, sub, None, f"no reader has subspecialty {sub}: shared pool")
    on_shift = [u for u in qualified if u.on_shift(now_utc)]
    if not on_shift:
        return RoutingDecision(priority, sub, None, f"no {sub} reader on shift: shared pool")
    best = min(on_shift, key=lambda u: (open_workload.get(u.name, 0), u.name))
    return RoutingDecision(priority, sub, best.name,
                           f"{sub}; {len(on_shift)} on shift; lowest workload "
                           f"({open_workload.get(best.name, 0)} open)")
