"""`readroom report sign | addendum | keygen | export | verify` and `readroom outbox`: the reporting command line.

Owns argument parsing and printing only; the work is done by :mod:`reporting.workflow` (the same code path as the
GUI's Sign button) and :mod:`reporting.outbox`. Connection options are the worklist CLI's (``--profile`` or
``--server/--user``; password from ``READROOM_PASSWORD`` or the keyring). The signing PIN comes from
``READROOM_SIGNING_PIN``, the keyring (``keygen --remember-pin``), or a prompt on a terminal - never an argument.
Exit codes: 0 done, 1 error, 2 report not valid, 5 warnings need ``--accept-warnings``.
"""
from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path

EXIT_ERROR, EXIT_INVALID, EXIT_CONFIRM = 1, 2, 5


def _connection_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("server")
    g.add_argument("--profile", help="saved server profile name")
    g.add_argument("--server", help="DICOMweb base URL, e.g. https://pacs.example.org/dicom-web")
    g.add_argument("--user", help="user name at the server (also the signing reader)")


def register(subparsers) -> None:
    rep = subparsers.add_parser("report", help="sign reports, write addenda, manage the signing key")
    sub = rep.add_subparsers(dest="report_command", required=True)

    p = sub.add_parser("sign", help="fill a template from a JSON file, sign it, and send it")
    _connection_args(p)
    p.add_argument("--workitem", required=True, help="UPS workitem UID of the study")
    p.add_argument("--template", help="template id (default: chosen from the study)")
    p.add_argument("--values", required=True, type=Path,
                   help='JSON: {"field": "text", ...} or {"macro": "normal", "values": {...}, "critical": [...]}')
    p.add_argument("--name", help="reader's name as printed (DICOM form Family^Given); default: user name")
    p.add_argument("--organization", default="", help="verifying organization written into the SR")
    p.add_argument("--accept-warnings", action="store_true", help="sign even if validation warned")
    p.add_argument("--no-send", action="store_true", help="only queue in the outbox (send later)")
    p.add_argument("--preliminary", action="store_true",
                   help="send a preliminary (unsigned, unverified) report instead; the workitem stays open")
    p.set_defaults(func=cmd_sign)

    p = sub.add_parser("addendum", help="add an addendum to the last signed report of a study")
    _connection_args(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--study", help="Study Instance UID")
    g.add_argument("--workitem", help="UPS workitem UID of the study")
    t = p.add_mutually_exclusive_group(required=True)
    t.add_argument("--text", help="the addendum text")
    t.add_argument("--text-file", type=Path, help="file holding the addendum text")
    p.add_argument("--name", help="reader's name as printed (Family^Given)")
    p.add_argument("--organization", default="")
    p.add_argument("--accept-warnings", action="store_true")
    p.add_argument("--no-send", action="store_true")
    p.set_defaults(func=cmd_addendum)

    p = sub.add_parser("keygen", help="create the reader's signing key (Ed25519, protected by a PIN)")
    p.add_argument("--user", help="reader (default: the only saved profile's user)")
    p.add_argument("--profile", help="saved server profile name (for the user name)")
    p.add_argument("--server", help=argparse.SUPPRESS)
    p.add_argument("--force", action="store_true", help="replace an existing key")
    p.add_argument("--remember-pin", action="store_true", help="also keep the PIN in the keyring (unattended use)")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("export", help="write a study's signed report(s) as SR, PDF, FHIR JSON and HL7 files")
    p.add_argument("--study", required=True, help="Study Instance UID")
    p.add_argument("--out", required=True, type=Path, help="folder to write into (created)")
    p.add_argument("--all", action="store_true", help="every signed version (default: the latest)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import-mrrt", help="import an IHE MRRT / RadReport HTML template as a report template")
    p.add_argument("html_file", type=Path)
    p.add_argument("--id", help="template id (default: from the template's dcterms.identifier or title)")
    p.add_argument("--out", type=Path, help="folder (default: the user templates folder, used by ReadRoom)")
    p.set_defaults(func=cmd_import_mrrt)

    p = sub.add_parser("verify", help="check that an SR file is a report signed here, unchanged")
    p.add_argument("sr_file", type=Path)
    p.set_defaults(func=cmd_verify)

    p = subparsers.add_parser("outbox", help="signed reports waiting to be sent; --retry sends them now")
    _connection_args(p)
    p.add_argument("--retry", action="store_true", help="send every waiting report now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_outbox)


# -- helpers ----------------------------------------------------------------------------------------------------
def _err(msg: str) -> None:
    print(f"readroom: {msg}", file=sys.stderr)


def _profile(args):
    from app.cli_worklist import resolve_profile

    return resolve_profile(args)


def _user(args) -> str:
    if getattr(args, "user", None):
        return args.user
    return _profile(args).user


def _pin(user: str, confirm: bool = False) -> str:
    from reporting import signing

    pin = signing.pin_from_environment(user)
    if pin:
        return pin
    if not sys.stdin.isatty():
        raise SystemExit(_fail(f"no signing PIN: set {signing.PIN_ENV} or run on a terminal"))
    pin = getpass.getpass("Signing PIN: ")
    if confirm and getpass.getpass("Again: ") != pin:
        raise SystemExit(_fail("the two PINs differ"))
    return pin


def _fail(msg: str) -> int:
    _err(msg)
    return EXIT_ERROR


def _study_context(session, item):
    from reporting.model import InstanceRef, StudyContext

    def first(d, tag):
        v = d.get(tag, {}).get("Value", [""])
        v = v[0] if v else ""
        return v.get("Alphabetic", "") if isinstance(v, dict) else str(v)

    ctx = StudyContext.from_worklist_item(item)
    studies = session.qido_studies({"StudyInstanceUID": ctx.study_uid}) if ctx.study_uid else []
    if studies:
        s = studies[0]
        ctx.accession_number = first(s, "00080050")
        ctx.study_date = first(s, "00080020")
        ctx.study_time = first(s, "00080030").split(".")[0]
        ctx.study_id = first(s, "00200010")
        ctx.referring_physician = first(s, "00080090")
        ctx.patient_birth_date = ctx.patient_birth_date or first(s, "00100030")
        ctx.instances = [InstanceRef(first(i, "0020000E"), first(i, "00080016"), first(i, "00080018"))
                         for i in session.qido_instances(ctx.study_uid)]
    return ctx


def apply_values(report, data: dict, who) -> None:
    """Fill a report from the --values JSON (flat field->text, or macro/values/critical)."""
    from reporting.model import Communication

    if not any(k in data for k in ("macro", "values", "critical")):
        data = {"values": data}
    if data.get("macro"):
        report.apply_macro(data["macro"])
    for field_id, text in data.get("values", {}).items():
        report.set_field(field_id, str(text))
    for c in data.get("critical", []):
        cr = report.flag_critical(c["finding"], int(c.get("category", 1)), who)
        if c.get("recipient"):
            report.record_communication(cr, Communication(c["recipient"], c.get("method", "phone"), c["at"],
                                                          bool(c.get("read_back", False)),
                                                          c.get("by", who.name)))


def _deliver(outbox, item_id, args, session=None, worklist=None) -> int:
    from cloud_client.archive import ArchiveSink
    from cloud_client.errors import CloudError
    from cloud_client.session import DicomWebSession

    own = session is None
    try:
        session = session or DicomWebSession(_profile(args))
        sink = ArchiveSink(session, worklist)
        outbox.deliver_one(item_id, sink)
    except (CloudError, OSError) as exc:
        print(f"Saved. Not sent yet ({exc}). {outbox.status_text()}; 'readroom outbox --retry' sends them.")
        return 0
    finally:
        if own and session is not None:
            session.close()
    if any(p.item_id == item_id for p in outbox.pending()):
        print(f"Saved. Not sent yet. {outbox.status_text()}.")
    else:
        print("Sent to the archive.")
    return 0


# -- commands ---------------------------------------------------------------------------------------------------
def cmd_sign(args) -> int:
    from cloud_client.errors import CloudError
    from cloud_client.session import DicomWebSession
    from cloud_client.worklist import WorklistClient
    from reporting import signing
    from reporting.drafts import DraftStore
    from reporting.model import Person, Report
    from reporting.outbox import Outbox
    from reporting.templates import choose_template, default_library
    from reporting.workflow import (
        NeedsConfirmation,
        ValidationFailed,
        send_preliminary,
        sign_report,
        write_outputs,
    )

    try:
        data = json.loads(args.values.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return _fail(f"cannot read {args.values}: {exc}")
    try:
        profile = _profile(args)
        with DicomWebSession(profile) as session:
            wl = WorklistClient(session)
            item = wl.get(args.workitem)
            if not item.held_here:
                item = wl.claim(args.workitem)
            ctx = _study_context(session, item)
            reader = Person(profile.user, args.name or profile.user)
            template = (default_library().get(args.template) if args.template
                        else choose_template(ctx.modality, ctx.body_part, ctx.description))
            drafts = DraftStore()
            report = drafts.load(ctx.study_uid)  # e.g. after a preliminary report: continue that one
            if report is None or report.template.id != template.id:
                report = Report(template, ctx, author=reader)
            else:
                report.study = ctx
            apply_values(report, data, reader)
            outbox = Outbox()
            if args.preliminary:
                try:
                    pre = send_preliminary(report, reader, organization=args.organization, outbox=outbox,
                                           accept_warnings=args.accept_warnings)
                except ValidationFailed as exc:
                    _err(str(exc))
                    return EXIT_INVALID
                except NeedsConfirmation as exc:
                    _err(str(exc) + "\n(use --accept-warnings to send anyway)")
                    return EXIT_CONFIRM
                drafts.save(report)  # the final report continues from here and supersedes the preliminary
                print(f"Preliminary report: SR {pre.sr.sop_instance_uid}")
                if args.no_send:
                    print(f"Queued. {outbox.status_text()}.")
                    return 0
                return _deliver(outbox, pre.outbox_item.item_id, args, session, wl)
            try:
                result = sign_report(report, reader, _pin(reader.user_id), organization=args.organization,
                                     outbox=outbox, accept_warnings=args.accept_warnings, outputs=False)
            except ValidationFailed as exc:
                _err(str(exc))
                return EXIT_INVALID
            except NeedsConfirmation as exc:
                _err(str(exc) + "\n(use --accept-warnings to sign anyway)")
                return EXIT_CONFIRM
            print(f"Signed: SR {result.record.sr['sop_instance_uid']} (template {template.id})")
            for w in result.warnings:
                print(f"  accepted warning: {w.message}")
            if args.no_send:
                print(f"Queued. {outbox.status_text()}.")
                rc = 0
            else:
                rc = _deliver(outbox, result.outbox_item.item_id, args, session, wl)
            write_outputs(result.record, args.organization)  # PDF/FHIR/HL7: after the SR is on its way
            return rc
    except (KeyError, signing.SigningError) as exc:
        return _fail(str(exc).strip("'\""))
    except CloudError as exc:
        return _fail(str(exc))


def cmd_addendum(args) -> int:
    from cloud_client.errors import CloudError
    from reporting import signing
    from reporting.model import Person
    from reporting.outbox import Outbox
    from reporting.workflow import (
        NeedsConfirmation,
        ValidationFailed,
        sign_addendum,
        signed_records,
        start_addendum,
    )

    text = args.text if args.text is not None else args.text_file.read_text(encoding="utf-8")
    try:
        profile = _profile(args)
        study = args.study
        if study is None:
            from cloud_client.session import DicomWebSession
            from cloud_client.worklist import WorklistClient

            with DicomWebSession(profile) as session:
                study = WorklistClient(session).get(args.workitem).study_uid
        outbox = Outbox()
        records = signed_records(outbox, study)
        if not records:
            return _fail("no signed report of this study is held on this workstation")
        reader = Person(profile.user, args.name or profile.user)
        addendum = start_addendum(records[-1], reader)
        addendum.set_field("addendum", text.strip())
        try:
            result = sign_addendum(addendum, reader, _pin(reader.user_id), organization=args.organization,
                                   outbox=outbox, accept_warnings=args.accept_warnings)
        except ValidationFailed as exc:
            _err(str(exc))
            return EXIT_INVALID
        except NeedsConfirmation as exc:
            _err(str(exc) + "\n(use --accept-warnings to sign anyway)")
            return EXIT_CONFIRM
        print(f"Signed addendum: SR {result.record.sr['sop_instance_uid']} "
              f"(amends {records[-1].sr['sop_instance_uid']})")
        if args.no_send:
            print(f"Queued. {outbox.status_text()}.")
            return 0
        return _deliver(outbox, result.outbox_item.item_id, args)
    except (KeyError, signing.SigningError) as exc:
        return _fail(str(exc).strip("'\""))
    except CloudError as exc:
        return _fail(str(exc))


def cmd_keygen(args) -> int:
    from reporting import signing

    try:
        user = _user(args)
    except (KeyError, ValueError, SystemExit) as exc:
        return _fail(f"say which reader with --user ({exc})")
    try:
        pin = _pin(user, confirm=True)
        pub = signing.generate_key(user, pin, overwrite=args.force)
        if args.remember_pin:
            signing.remember_pin(user, pin)
    except signing.SigningError as exc:
        return _fail(f"{exc} (use --force to replace it)" if "already" in str(exc) else str(exc))
    print(f"Signing key created for {user}. Key id {signing.key_id(__import__('base64').b64decode(pub))}.")
    return 0


def cmd_export(args) -> int:
    from cloud_client.audit import AuditTrail
    from reporting.outbox import Outbox
    from reporting.workflow import OUTPUT_NAMES, read_output, signed_records

    outbox = Outbox()
    records = signed_records(outbox, args.study)
    if not records:
        return _fail("no signed report of this study is held on this workstation")
    args.out.mkdir(parents=True, exist_ok=True)
    for rec in records if args.all else records[-1:]:
        sop = rec.sr["sop_instance_uid"]
        item = outbox.get(sop)
        if item is not None:
            item.dicom_datasets()[0].save_as(args.out / f"{sop}.sr.dcm", enforce_file_format=True)
        for name in OUTPUT_NAMES:
            (args.out / f"{sop}.{name}").write_bytes(read_output(rec, name))
        print(f"Exported {sop} ({'addendum' if rec.content.get('predecessor') else 'report'}) to {args.out}")
        AuditTrail().record("export", rec.signature.signer, study_uids=[args.study], sop_count=1 + len(OUTPUT_NAMES),
                            detail="signed report exported to files")
    return 0


def cmd_import_mrrt(args) -> int:
    from reporting.mrrt import mrrt_to_template_json
    from reporting.templates import TemplateError, user_templates_dir

    try:
        data = mrrt_to_template_json(args.html_file.read_text(encoding="utf-8"), template_id=args.id)
    except (OSError, UnicodeDecodeError, TemplateError) as exc:
        return _fail(f"cannot import {args.html_file}: {exc}")
    out_dir = args.out or user_templates_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{data['id']}.json"
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    fields = sum(len(s["fields"]) for s in data["sections"])
    print(f"Imported template {data['id']!r} ({len(data['sections'])} sections, {fields} fields) to {path}")
    return 0


def cmd_verify(args) -> int:
    import pydicom

    from reporting.signing import public_key_b64
    from reporting.workflow import signed_records, verify_sr

    try:
        ds = pydicom.dcmread(args.sr_file)
    except (OSError, pydicom.errors.InvalidDicomError) as exc:
        return _fail(f"cannot read {args.sr_file}: {exc}")
    for rec in signed_records(study_uid=str(ds.StudyInstanceUID)):
        if rec.sr["sop_instance_uid"] == ds.SOPInstanceUID:
            trusted = public_key_b64(rec.signature.signer)
            if verify_sr(ds, rec, trusted):
                print(f"VALID: signed by {rec.signature.signer} at {rec.signature.signed_at}")
                return 0
            print("INVALID: the report differs from what was signed (or the signature is broken)")
            return EXIT_INVALID
    return _fail("this SR was not signed on this workstation (no signature record)")


def cmd_outbox(args) -> int:
    import datetime as dt

    from cloud_client.errors import CloudError
    from reporting.outbox import Outbox

    outbox = Outbox()
    if args.retry and outbox.pending_count():
        from cloud_client.archive import ArchiveSink
        from cloud_client.session import DicomWebSession

        try:
            with DicomWebSession(_profile(args)) as session:
                sent = outbox.deliver_due(ArchiveSink(session), force=True)
            print(f"Sent {sent}.")
        except (CloudError, KeyError, ValueError) as exc:
            _err(str(exc).strip("'\""))
    pending = outbox.pending()
    if args.json:
        print(json.dumps([p.__dict__ for p in pending], indent=2))
        return 0 if not (args.retry and pending) else EXIT_ERROR
    print(outbox.status_text())
    for p in pending:
        when = dt.datetime.fromtimestamp(p.created_at).strftime("%Y-%m-%d %H:%M")
        step = "stored, workitem not completed" if p.stored else "not stored"
        print(f"  {p.kind:10} signed {when}  {step}  tries {p.attempts}  {p.last_error}")
    return 0 if not (args.retry and pending) else EXIT_ERROR
