"""`readroom worklist | claim | release | fetch | priors | profile | login | audit`: the cloud client's CLI.

Owns argument parsing and printing for the cloud client's commands; all work is done by the same
cloud_client code paths the GUI uses. Each command takes ``--server URL --user NAME`` or ``--profile NAME``
(with exactly one saved profile, that one is used). Passwords come from ``READROOM_PASSWORD`` or the OS keyring
(``readroom login`` stores one); they are never accepted as command-line arguments.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time

from cloud_client import profiles
from cloud_client.audit import FAILURE, AuditError, AuditTrail
from cloud_client.errors import AlreadyClaimed, AuthError, CloudError
from cloud_client.profiles import ServerProfile

EXIT_ERROR, EXIT_AUTH, EXIT_TAKEN = 1, 3, 4


def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--profile", help="saved server profile name")
    g.add_argument("--server", help="DICOMweb base URL, e.g. https://pacs.example.org/dicom-web")
    g.add_argument("--user", help="user name at the server")


def register(subparsers) -> None:
    p = subparsers.add_parser("worklist", help="show my worklist (STAT first, then by deadline)")
    _connection_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--pool", action="store_true", help="include unassigned items from the shared pool")
    p.set_defaults(func=cmd_worklist)

    p = subparsers.add_parser("claim", help="claim a worklist item (SCHEDULED -> IN PROGRESS)")
    _connection_args(p)
    p.add_argument("workitem_uid")
    p.set_defaults(func=cmd_claim)

    p = subparsers.add_parser("release", help="give a claimed worklist item up")
    _connection_args(p)
    p.add_argument("workitem_uid")
    p.add_argument("--reason", default="Released by the reader for reassignment")
    p.set_defaults(func=cmd_release)

    p = subparsers.add_parser("fetch", help="download a study into the encrypted local cache")
    _connection_args(p)
    p.add_argument("study_uid")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("priors", help="list other studies of the patient of a worklist item")
    _connection_args(p)
    p.add_argument("workitem_uid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_priors)

    p = subparsers.add_parser("profile", help="manage saved server profiles")
    sub = p.add_subparsers(dest="profile_command", required=True)
    a = sub.add_parser("add", help="add or replace a server profile")
    a.add_argument("name")
    a.add_argument("--server", required=True, help="DICOMweb base URL")
    a.add_argument("--user", required=True)
    a.add_argument("--bearer", action="store_true", help="OAuth2 bearer token instead of a password")
    a.add_argument("--allow-insecure-http", action="store_true",
                   help="allow plain http to a non-loopback server (trusted private networks only)")
    a.add_argument("--ca-bundle", help="PEM file of the certificate authority to trust for this server")
    a.add_argument("--parallel", type=int, default=4, help="parallel connections for retrieval")
    a.add_argument("--transfer-syntax", action="append", dest="transfer_syntaxes",
                   help="transfer syntax UID to ask for ('*' = as stored); repeat for fallbacks")
    a.set_defaults(func=cmd_profile_add)
    ls = sub.add_parser("list", help="list saved server profiles")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_profile_list)
    rm = sub.add_parser("remove", help="remove a saved profile and its stored password")
    rm.add_argument("name")
    rm.set_defaults(func=cmd_profile_remove)

    p = subparsers.add_parser("login", help="check and store the password (or token) in the OS keyring")
    _connection_args(p)
    p.set_defaults(func=cmd_login)

    p = subparsers.add_parser("audit", help="verify or export the local audit trail")
    p.add_argument("--xml", metavar="FILE", help="export as DICOM PS3.15 audit messages (XML)")
    p.add_argument("--user", default=None, help="who is asking (recorded as Audit Log Used)")
    p.set_defaults(func=cmd_audit)


# -- helpers ----------------------------------------------------------------------------------------------------
def resolve_profile(args) -> ServerProfile:
    if getattr(args, "profile", None):
        return profiles.get_profile(args.profile)
    if getattr(args, "server", None):
        if not args.user:
            raise SystemExit("readroom: --server needs --user")
        return ServerProfile(name="command-line", base_url=args.server, user=args.user)
    saved = profiles.load_profiles()
    if len(saved) == 1:
        return next(iter(saved.values()))
    raise SystemExit("readroom: name a server with --server URL --user NAME or --profile NAME"
                     + (f" (saved: {', '.join(sorted(saved))})" if saved else ""))


def _run(fn):
    """Run a command body; turn cloud errors into a clear line on stderr and an exit code."""
    try:
        return fn()
    except AlreadyClaimed as exc:
        print(f"readroom: {exc}", file=sys.stderr)
        return EXIT_TAKEN
    except AuthError as exc:
        print(f"readroom: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except CloudError as exc:
        print(f"readroom: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyError as exc:  # unknown profile
        print(f"readroom: {exc.args[0]}", file=sys.stderr)
        return EXIT_ERROR


def _session(args):
    from cloud_client.session import DicomWebSession

    return DicomWebSession(resolve_profile(args))


def _worklist(args, session):
    from cloud_client.cache import InstanceCache
    from cloud_client.worklist import WorklistClient

    return WorklistClient(session, cache=InstanceCache(max_bytes=session.profile.cache_max_bytes))


def _fmt_dt(dt) -> str:
    return dt.astimezone().strftime("%Y-%m-%d %H:%M") if dt else "-"


# -- commands ---------------------------------------------------------------------------------------------------
def cmd_worklist(args) -> int:
    def body():
        with _session(args) as s:
            items = _worklist(args, s).my_items(include_pool=args.pool)
        if args.json:
            print(json.dumps([i.as_json() for i in items], indent=2))
            return 0
        if not items:
            print("Your worklist is empty.")
            return 0
        rows = [("PRIO", "DEADLINE", "STATE", "MOD", "BODY PART", "DESCRIPTION", "PATIENT", "SITE", "WORKITEM")]
        for i in items:
            prio = "STAT" if i.is_stat else i.priority
            who = f"{i.patient_name} ({i.patient_sex or '?'}{' ' + i.patient_age if i.patient_age else ''})"
            state = i.state + (" (mine)" if i.held_here else "") + (" [pool]" if i.in_pool else "")
            rows.append((prio, _fmt_dt(i.deadline), state, i.modality, i.body_part, i.study_description, who,
                         i.clinic or i.site_id, i.workitem_uid))
        widths = [max(len(str(r[c])) for r in rows) for c in range(len(rows[0]))]
        for r in rows:
            print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip())
        return 0
    return _run(body)


def cmd_claim(args) -> int:
    def body():
        with _session(args) as s:
            item = _worklist(args, s).claim(args.workitem_uid)
        print(f"Claimed {item.workitem_uid} ({item.state}); study {item.study_uid}")
        return 0
    return _run(body)


def cmd_release(args) -> int:
    def body():
        with _session(args) as s:
            _worklist(args, s).release(args.workitem_uid, reason=args.reason)
        print(f"Released {args.workitem_uid}")
        return 0
    return _run(body)


def cmd_fetch(args) -> int:
    from cloud_client.cache import InstanceCache
    from cloud_client.retrieve import StudyFetcher

    def body():
        last = [0.0]

        def progress(p):
            now = time.monotonic()
            if args.quiet or (now - last[0] < 0.5 and p.instances_done < p.instances_total):
                return
            last[0] = now
            eta = f", ETA {p.eta_s:.0f} s" if p.eta_s is not None else ""
            print(f"\r{p.instances_done}/{p.instances_total} instances, {p.bytes_done / 1e6:.1f} MB, "
                  f"{p.rate_bytes_s / 1e6:.1f} MB/s{eta}   ", end="", file=sys.stderr, flush=True)

        with _session(args) as s:
            cache = InstanceCache(max_bytes=s.profile.cache_max_bytes)
            result = StudyFetcher(s, cache).fetch_study(args.study_uid, on_progress=progress)
        if not args.quiet:
            print(file=sys.stderr)
        print(f"instances: {result.instances_total} ({result.fetched} fetched, {result.from_cache} cached)")
        print(f"bytes: {result.bytes_fetched}")
        print(f"seconds: {result.seconds:.3f}")
        if result.first_instance_s is not None:
            print(f"first instance after: {result.first_instance_s:.3f} s")
        return 0 if result.complete else EXIT_ERROR
    return _run(body)


def cmd_priors(args) -> int:
    def body():
        with _session(args) as s:
            wl = _worklist(args, s)
            priors = wl.priors(wl.get(args.workitem_uid))
        if args.json:
            print(json.dumps([{"study_uid": p.study_uid, "study_date": p.study_date.isoformat()
                               if p.study_date else None, "description": p.description,
                               "modalities": p.modalities} for p in priors], indent=2))
        else:
            for p in priors:
                print(f"{p.study_date or '-'}  {'/'.join(p.modalities):6}  {p.description}  {p.study_uid}")
            if not priors:
                print("No prior studies.")
        return 0
    return _run(body)


def cmd_profile_add(args) -> int:
    try:
        p = ServerProfile(name=args.name, base_url=args.server, user=args.user,
                          auth_kind="bearer" if args.bearer else "basic",
                          allow_insecure_http=args.allow_insecure_http, ca_bundle=args.ca_bundle,
                          parallel_connections=args.parallel,
                          **({"transfer_syntaxes": args.transfer_syntaxes} if args.transfer_syntaxes else {}))
        profiles.check_transport(p)
    except (ValueError, CloudError) as exc:
        print(f"readroom: {exc}", file=sys.stderr)
        return EXIT_ERROR
    profiles.save_profile(p)
    print(f"Saved profile {p.name}: {p.user} at {p.base_url}. Next: readroom login --profile {p.name}")
    return 0


def cmd_profile_list(args) -> int:
    saved = profiles.load_profiles()
    if args.json:
        print(json.dumps([p.to_json() for p in saved.values()], indent=2))
    elif not saved:
        print("No saved profiles. Add one with: readroom profile add NAME --server URL --user NAME")
    else:
        for p in saved.values():
            print(f"{p.name}\t{p.user}\t{p.base_url}\t{p.auth_kind}")
    return 0


def cmd_profile_remove(args) -> int:
    try:
        p = profiles.get_profile(args.name)
    except KeyError as exc:
        print(f"readroom: {exc.args[0]}", file=sys.stderr)
        return EXIT_ERROR
    profiles.forget_password(p)
    profiles.delete_profile(args.name)
    print(f"Removed profile {args.name}")
    return 0


def cmd_login(args) -> int:
    from cloud_client.session import DicomWebSession

    def body():
        profile = resolve_profile(args)
        secret = os.environ.get(profiles.PASSWORD_ENV)
        if not secret:
            prompt = "Token" if profile.auth_kind == "bearer" else f"Password for {profile.user}"
            secret = getpass.getpass(f"{prompt} at {profile.base_url}: ")
        audit = AuditTrail()
        try:
            with DicomWebSession(profile, secret) as s:
                s.check_sign_in()
        except AuthError:
            audit.record("sign-in", profile.user, FAILURE, detail="rejected by the archive")
            raise
        profiles.store_password(profile, secret)
        audit.record("sign-in", profile.user)
        print(f"Signed in as {profile.user} at {profile.base_url}; the password is kept in the OS keyring.")
        return 0
    return _run(body)


def cmd_audit(args) -> int:
    trail = AuditTrail()
    try:
        n = trail.verify()
    except AuditError as exc:
        print(f"readroom: {exc}", file=sys.stderr)
        return EXIT_ERROR
    trail.record("audit-log-used", args.user or os.environ.get("USER", ""))
    if args.xml:
        count = trail.export_xml(args.xml)
        print(f"Exported {count} audit events to {args.xml}")
    else:
        print(f"Audit trail intact: {n} events in {trail.path}")
    return 0
