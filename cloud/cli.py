"""The ``readroom-cloud`` command: ``start`` the reference cloud, write ``demo-data``, ``hash-password``.

Owns argument parsing and turning start-up problems into one clear line and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path


def _start(args) -> int:
    from cloud.config import ConfigError, load_config
    from cloud.supervisor import CloudStartError, Supervisor

    if args.config is None and not args.seed_demo:
        print("readroom-cloud: no users configured: pass --config FILE (format in cloud/README.md), "
              "or --seed-demo for the demo users and studies", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
    except ConfigError as e:
        print(f"readroom-cloud: {e}", file=sys.stderr)
        return 2
    sup = Supervisor(Path(args.dir), args.http_port, args.dicom_port, config, seed_demo=args.seed_demo)
    try:
        sup.start()
    except (CloudStartError, FileNotFoundError) as e:
        print(f"readroom-cloud: {e}", file=sys.stderr)
        sup.stop()
        return 1
    except BaseException:
        sup.stop()
        raise
    return sup.serve_forever()


def _demo_data(args) -> int:
    from cloud.demo_data import write_demo_studies

    studies = write_demo_studies(Path(args.out))
    for s in studies:
        print(f"{s.modality:3} {s.priority:7} {len(s.files):4} files  {s.description}")
    return 0


def _hash_password(args) -> int:
    from cloud.config import hash_password

    pw = sys.stdin.readline().rstrip("\n") if args.stdin else getpass.getpass("Password: ")
    if not pw:
        print("readroom-cloud: empty password", file=sys.stderr)
        return 2
    print(hash_password(pw))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ap = argparse.ArgumentParser(prog="readroom-cloud", description="ReadRoom reference cloud "
                                 "(Orthanc + nginx + UPS-RS worklist service) on 127.0.0.1")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start the cloud in the foreground (stop with Ctrl-C / SIGTERM)")
    s.add_argument("--dir", required=True, help="where storage, database, generated configs and logs live")
    s.add_argument("--http-port", type=int, required=True, help="the front door (nginx) port")
    s.add_argument("--dicom-port", type=int, default=None, help="Orthanc's DICOM port (default HTTP port + 1)")
    s.add_argument("--seed-demo", action="store_true", help="demo users; store the demo studies via STOW-RS")
    s.add_argument("--config", type=Path, default=None, help="users, shifts, rules, SLA, TLS (cloud/README.md)")
    s.set_defaults(func=_start)
    d = sub.add_parser("demo-data", help="write the demo studies as DICOM files")
    d.add_argument("--out", required=True)
    d.set_defaults(func=_demo_data)
    h = sub.add_parser("hash-password", help="print a password hash for the config file")
    h.add_argument("--stdin", action="store_true", help="read the password from standard input")
    h.set_defaults(func=_hash_password)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
