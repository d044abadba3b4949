"""The dictation engine: Vosk streaming recognition in a worker thread, emitting plain events.

Owns turning an :class:`dictation.audio.AudioSource` into :mod:`dictation.events`: live
:class:`~dictation.events.PartialText`, :class:`~dictation.events.FinalText` with word timestamps (split
around inline commands, normalised), :class:`~dictation.events.CommandEvent`,
:class:`~dictation.events.ConfirmRequest` for "sign report" (never signs), level meter values and clear error
events. Two modes: ``dictation`` (free speech; commands recognised inside it) and ``command`` (a restricted
Vosk grammar built from the language's command phrases, the template's macro titles and section names, so
only commands can come out). Events go to ``on_event`` (called on the worker thread) or to :attr:`events`.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping

from dictation import commands as C
from dictation.audio import AudioError, AudioSource, level_dbfs
from dictation.commands import CommandParser, Vocabulary
from dictation.events import (
    CommandEvent,
    ConfirmRequest,
    ErrorEvent,
    FinalText,
    LevelEvent,
    PartialText,
    StoppedEvent,
    Word,
)
from dictation.normalize import Normalizer

log = logging.getLogger(__name__)

DICTATION = "dictation"
COMMAND = "command"
UNKNOWN = "[unk]"
READ_TIMEOUT = 0.1


def words_from_result(result: dict) -> list[Word]:
    """The words of a Vosk result (``SetWords(True)``) as :class:`Word` values."""
    if result.get("result"):
        return [Word(str(w["word"]), float(w["start"]), float(w["end"]), float(w.get("conf", 1.0)))
                for w in result["result"]]
    return [Word(w, 0.0, 0.0) for w in str(result.get("text", "")).split()]


class DictationEngine:
    """Streams audio through a Vosk recogniser on a worker thread and emits dictation events.

    ``model`` is a loaded ``vosk.Model`` (see :func:`dictation.models.load_model`). ``macros`` are template
    macro titles, ``fields`` {label: field id} for "go to <label>", ``terms`` template words (used by the normaliser; in command mode, only phrases whose words
    the model knows are put in the grammar). ``supports_grammar`` says whether the model takes phrase lists
    (small "lookahead" models do); without it command mode falls back to free recognition + the parser."""

    def __init__(self, model, vocabulary: Vocabulary, *, macros: Iterable[str] = (), terms: Iterable[str] = (),
                 fields: Mapping[str, str] | None = None, mode: str = DICTATION,
                 on_event: Callable[[object], None] | None = None, supports_grammar: bool = True,
                 levels: bool = True, sample_rate: int = 16000) -> None:
        if mode not in (DICTATION, COMMAND):
            raise ValueError(f"unknown dictation mode {mode!r}")
        self.model = model
        self.vocabulary = vocabulary
        self.parser = CommandParser(vocabulary, macros=macros, fields=fields)
        self.terms = tuple(terms)
        self.normalizer = Normalizer(vocabulary, terms=self.terms)
        self.supports_grammar = supports_grammar
        self.levels = levels
        self.sample_rate = sample_rate
        self.on_event = on_event
        self.events: queue.Queue = queue.Queue()
        self._mode = mode
        self._pending_mode: str | None = None
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        self._source: AudioSource | None = None
        self._utterance = 0
        self._grammar: list[str] | None = None

    # -- control ----------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._pending_mode or self._mode

    def set_mode(self, mode: str) -> None:
        """Switch between dictation and command mode; takes effect at the next audio block (the utterance in
        progress is finished first)."""
        if mode not in (DICTATION, COMMAND):
            raise ValueError(f"unknown dictation mode {mode!r}")
        with self._lock:
            self._pending_mode = mode

    def command_grammar(self) -> list[str]:
        """The phrase list used in command mode (phrases the model cannot say are left out)."""
        if self._grammar is None:
            finder = getattr(self.model, "vosk_model_find_word", None)
            phrases = self.parser.phrases()
            if finder is not None:
                kept = [p for p in phrases if all(finder(w) >= 0 for w in p.split())]
                if len(kept) < len(phrases):
                    log.info("command grammar: %d of %d phrases use words the model does not know; left out",
                             len(phrases) - len(kept), len(phrases))
                phrases = kept
                if finder(UNKNOWN) >= 0:
                    phrases.append(UNKNOWN)
            self._grammar = phrases
        return self._grammar

    def vocabulary_report(self):
        """Which template terms this model can recognise at all (:class:`dictation.models.VocabularyReport`).
        Vosk cannot add words to a compiled model; unknown terms can only be typed (the app may say so)."""
        from dictation.models import check_vocabulary

        return check_vocabulary(self.model, self.terms)

    def _recognizer(self, mode: str):
        import vosk

        if mode == COMMAND and self.supports_grammar:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate,
                                       json.dumps(self.command_grammar(), ensure_ascii=False))
        else:
            rec = vosk.KaldiRecognizer(self.model, self.sample_rate)
        rec.SetWords(True)
        return rec

    def start(self, source: AudioSource) -> None:
        """Open ``source`` now - so a missing or busy microphone raises :class:`~dictation.audio.AudioError`
        here, on the caller's thread - then recognise on a worker thread until the source ends, :meth:`stop`
        or :meth:`cancel`."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("dictation is already running")
        self._abort.clear()
        self._stop_requested.clear()
        source.start()
        self._source = source
        self._thread = threading.Thread(target=self.run, args=(source, True), name="readroom-dictation",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop listening; audio captured so far is still recognised and its text emitted (push-to-talk
        release)."""
        self._stop_requested.set()
        if self._source is not None:
            self._source.stop()

    def cancel(self) -> None:
        """Stop at once, dropping audio not yet recognised."""
        self._abort.set()
        self.stop()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- worker -----------------------------------------------------------------------------------------
    def _emit(self, event) -> None:
        if self.on_event is not None:
            self.on_event(event)
        else:
            self.events.put(event)

    def run(self, source: AudioSource, started: bool = False) -> None:
        """Recognise ``source`` to its end on the calling thread (used by :meth:`start`, the CLI and tests).
        Audio errors, including failing to open the source, become :class:`ErrorEvent` s."""
        self._source = source
        reason = "end_of_audio"
        rec = None
        try:
            with self._lock:
                if self._pending_mode is not None:  # chosen before the run: no recogniser to finish
                    self._mode, self._pending_mode = self._pending_mode, None
            mode = self._mode
            rec = self._recognizer(mode)
            last_partial = ""
            if not started:
                try:
                    source.start()
                except AudioError as exc:
                    self._emit(ErrorEvent(exc.kind, str(exc)))
                    reason, rec = "error", None
                    return
            while not self._abort.is_set():
                if self._pending_mode is not None:
                    with self._lock:
                        new_mode, self._pending_mode = self._pending_mode, None
                    if new_mode != mode:
                        self._final(rec.FinalResult(), mode)
                        mode, self._mode = new_mode, new_mode
                        rec = self._recognizer(mode)
                        last_partial = ""
                try:
                    block = source.read(READ_TIMEOUT)
                except AudioError as exc:
                    self._final(rec.FinalResult(), mode)  # keep what was said before the device failed
                    rec = None
                    self._emit(ErrorEvent(exc.kind, str(exc)))
                    reason = "error"
                    break
                if block is None:
                    break
                if not block:
                    continue
                if self.levels:
                    self._emit(LevelEvent(*level_dbfs(block)))
                if rec.AcceptWaveform(block):
                    self._final(rec.Result(), mode)
                    if last_partial:
                        last_partial = ""
                        self._emit(PartialText(""))
                else:
                    partial = json.loads(rec.PartialResult()).get("partial", "")
                    if partial != last_partial:
                        last_partial = partial
                        self._emit(PartialText(partial))
            if self._abort.is_set():
                reason = "stopped"
            elif rec is not None:
                self._final(rec.FinalResult(), mode)
                if self._stop_requested.is_set() and reason == "end_of_audio":
                    reason = "stopped"
        except Exception:  # never let the worker die silently; nothing typed is touched
            log.exception("dictation engine failed")
            self._emit(ErrorEvent("engine", "Dictation stopped because of an internal error; the text already "
                                            "in the report is kept."))
            reason = "error"
        finally:
            try:
                source.stop()
            except Exception:
                log.debug("stopping the audio source failed", exc_info=True)
            self._source = None
            self._emit(StoppedEvent(reason, self._utterance))

    def _final(self, result_json: str, mode: str) -> None:
        result = json.loads(result_json)
        words = [w for w in words_from_result(result) if w.word != UNKNOWN]
        if not words:
            return
        self._utterance += 1
        uid = self._utterance
        names = [w.word for w in words]
        for seg in self.parser.parse(names):
            seg_words = tuple(words[seg.start:seg.end])
            if seg.command is None:
                if mode == COMMAND:
                    continue  # command mode inserts no text
                raw = " ".join(names[seg.start:seg.end])
                self._emit(FinalText(uid, self.normalizer.normalize(raw), raw, seg_words))
            elif seg.command.name in C.CONFIRM_COMMANDS:
                self._emit(ConfirmRequest(uid, seg.command.name))
            else:
                self._emit(CommandEvent(uid, seg.command, seg_words))



def reseed_feature_dither(seed: int = 1) -> bool:
    """Make the next recognitions reproducible: Kaldi adds random "dither" noise to the audio features, drawn
    from the C library's process-wide ``rand()``, so the same audio gives slightly different results run to run
    (vosk-api issues #868, #1126). Reseeding ``rand()`` before a run makes it repeatable - for tests and
    benchmarks that compare two recognisers on the same audio. Returns False where libc is not reachable."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.srand(ctypes.c_uint(seed))
        return True
    except (OSError, AttributeError, TypeError):
        return False
