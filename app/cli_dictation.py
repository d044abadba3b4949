"""`readroom dictation transcribe | devices | install-model`: the dictation command line.

Owns argument parsing and printing only; the work is done by the same core code the GUI uses:
:mod:`dictation.engine` (recognition, commands, normalisation), :mod:`dictation.apply` (the text the report
field would get), :mod:`dictation.audio` (devices) and :mod:`installer.vosk_model` (model download).
Exit codes: 0 done, 1 error, 2 no speech model.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

EXIT_ERROR, EXIT_NO_MODEL = 1, 2


def register(subparsers) -> None:
    d = subparsers.add_parser("dictation", help="speech recognition: transcribe a recording, list microphones, "
                                                "install the speech model")
    sub = d.add_subparsers(dest="dictation_command", required=True)

    p = sub.add_parser("transcribe", help="transcribe a WAV recording as dictation would type it")
    p.add_argument("file", type=Path, help="WAV file (any rate/channels; converted to 16 kHz mono)")
    p.add_argument("--model", help="Vosk model folder (default: READROOM_VOSK_MODEL, then settings)")
    p.add_argument("--language", help="command vocabulary language (default: from settings, e.g. en)")
    p.add_argument("--commands", action="store_true", help="command mode: only voice commands are recognised")
    p.add_argument("--json", action="store_true", help="print one JSON object per event")
    p.set_defaults(func=cmd_transcribe)

    p = sub.add_parser("devices", help="list microphones (input devices)")
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("install-model", help="download, verify (SHA-256) and unpack the English Vosk model")
    p.add_argument("--archive", type=Path, help="install from an already downloaded archive instead")
    p.add_argument("--dest", type=Path, help="models folder (default: the ReadRoom data folder)")
    p.add_argument("--sha256", help="expected SHA-256 of --archive when it is not the catalogue's model")
    p.add_argument("--name", help="folder name for the model (with --archive)")
    p.set_defaults(func=cmd_install_model)


def _event_json(event) -> dict:
    from dataclasses import asdict

    return {"event": type(event).__name__, **asdict(event)}


def cmd_transcribe(args) -> int:
    from dictation.apply import DictationApplier, PlainTextTarget
    from dictation.audio import AudioError, WavFileSource
    from dictation.commands import VocabularyError, load_vocabulary
    from dictation.engine import COMMAND, DICTATION, DictationEngine
    from dictation.events import (
        CommandEvent,
        ConfirmRequest,
        ErrorEvent,
        LevelEvent,
        PartialText,
        StoppedEvent,
    )
    from dictation.models import (
        DictationSettings,
        ModelNotFoundError,
        inspect_model_dir,
        load_model,
        resolve_model_dir,
    )

    settings = DictationSettings.load()
    try:
        info = inspect_model_dir(resolve_model_dir(args.model, settings))
        model = load_model(info.path)
    except ModelNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_NO_MODEL
    try:
        vocab = load_vocabulary(args.language or settings.language)
        source = WavFileSource(args.file)
    except (VocabularyError, AudioError) as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    events = []
    engine = DictationEngine(model, vocab, mode=COMMAND if args.commands else DICTATION, on_event=events.append,
                             supports_grammar=info.supports_grammar, levels=False)
    # A recording gives the same text every time it is transcribed: Kaldi's feature dither draws from the
    # C library's rand(), so it is reseeded first (live dictation keeps the random dither).
    from dictation.engine import reseed_feature_dither

    reseed_feature_dither(1)
    engine.run(source)
    target = PlainTextTarget({"text": ""})
    applier = DictationApplier(target)
    failed = False
    for ev in events:
        if isinstance(ev, (PartialText, LevelEvent)):
            continue
        if args.json:
            print(json.dumps(_event_json(ev), ensure_ascii=False))
        elif isinstance(ev, CommandEvent):
            arg = f" {ev.command.argument}" if ev.command.argument else ""
            print(f"[command: {ev.command.name}{arg}]")
        elif isinstance(ev, ConfirmRequest):
            print(f"[asks for confirmation: {ev.action}]")
        elif isinstance(ev, ErrorEvent):
            print(ev.message, file=sys.stderr)
        if isinstance(ev, ErrorEvent) or (isinstance(ev, StoppedEvent) and ev.reason == "error"):
            failed = True
        if not args.commands:
            applier.apply(ev)
    if not args.commands and not args.json:
        print(target.field_text("text"))
    return EXIT_ERROR if failed else 0


def cmd_devices(args) -> int:
    from dictation.audio import NO_DEVICE_MESSAGE, AudioError, list_input_devices

    try:
        devices = list_input_devices()
    except AudioError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_ERROR
    if not devices:
        print(NO_DEVICE_MESSAGE, file=sys.stderr)
        return EXIT_ERROR
    for d in devices:
        mark = "*" if d.is_default else " "
        print(f"{mark} {d.index:3d}  {d.name}  ({d.channels} ch, {d.default_samplerate:.0f} Hz)")
    return 0


def cmd_install_model(args) -> int:
    from dictation.models import inspect_model_dir
    from installer.vosk_model import ENGLISH_SMALL, ModelInstallError, ModelSpec, install_model

    spec = ENGLISH_SMALL
    if args.sha256 or args.name:
        spec = ModelSpec(args.name or spec.name, spec.url, args.sha256 or spec.sha256, None if args.archive else spec.size,
                         spec.language)

    def progress(done: int, total: int | None) -> None:
        if sys.stderr.isatty():
            pct = f"{100 * done / total:5.1f}%" if total else f"{done / 1e6:.1f} MB"
            print(f"\rDownloading speech model… {pct}", end="", file=sys.stderr, flush=True)

    try:
        target = install_model(spec, models_root=args.dest, archive=args.archive, progress=progress)
    except ModelInstallError as exc:
        print(f"\n{exc}" if sys.stderr.isatty() else str(exc), file=sys.stderr)
        return EXIT_ERROR
    info = inspect_model_dir(target)
    print(f"Installed {spec.name} in {target}" + ("" if info.supports_grammar else
                                                  " (this model cannot restrict recognition to commands)"))
    return 0
