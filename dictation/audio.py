"""Audio sources for dictation: the microphone (sounddevice) and WAV files, as 16 kHz mono 16-bit PCM.

Owns the :class:`AudioSource` interface the engine reads from, :class:`MicrophoneSource` (device from settings,
level meter values, clear errors for no device / busy device / device vanished), :class:`WavFileSource` (tests
and "transcribe a recording"; converts other rates/channels/sample formats), :func:`list_input_devices`, and
:class:`TalkController` - push-to-talk and toggle modes driven by key names that the GUI maps (a USB dictation
microphone's buttons are just more key names). No Qt here.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # bytes, int16
BLOCK_MS = 100


class AudioError(Exception):
    """An audio problem the reader can act on; ``kind`` matches :class:`dictation.events.ErrorEvent`."""

    kind = "audio"


class NoInputDeviceError(AudioError):
    kind = "no_device"


class DeviceBusyError(AudioError):
    kind = "device_busy"


class DeviceVanishedError(AudioError):
    kind = "device_vanished"


class AudioFormatError(AudioError):
    kind = "audio_format"


@runtime_checkable
class AudioSource(Protocol):
    """A stream of 16 kHz mono int16 PCM blocks."""

    sample_rate: int

    def start(self) -> None: ...

    def read(self, timeout: float | None = None) -> bytes | None:
        """The next block; ``b""`` if none arrived within ``timeout``; None when the stream has ended."""

    def stop(self) -> None:
        """End the stream; blocks captured before stop are still returned by :meth:`read`."""


def level_dbfs(pcm: bytes) -> tuple[float, float]:
    """(RMS, peak) of int16 PCM in dBFS; silence gives -inf-like -120."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if samples.size == 0:
        return -120.0, -120.0
    x = samples.astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(x * x)))
    peak = float(np.max(np.abs(x)))
    return (20 * math.log10(rms) if rms > 1e-6 else -120.0, 20 * math.log10(peak) if peak > 1e-6 else -120.0)


# -- WAV files ----------------------------------------------------------------------------------------------
def _to_mono_16k(samples: np.ndarray, rate: int, channels: int) -> np.ndarray:
    """float64 samples in [-1, 1], interleaved -> int16 mono at 16 kHz (linear interpolation when resampling
    without sox)."""
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    if rate != SAMPLE_RATE and samples.size:
        n_out = round(samples.size * SAMPLE_RATE / rate)
        t_out = np.arange(n_out) * (rate / SAMPLE_RATE)
        samples = np.interp(t_out, np.arange(samples.size), samples)
    return np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")


def _sox_convert(path: Path) -> Path:
    sox = shutil.which("sox")
    if sox is None:
        raise AudioFormatError(f"{path.name}: this WAV encoding needs the 'sox' program to convert it; "
                               "install sox or save the recording as 16-bit PCM WAV")
    fd, name = tempfile.mkstemp(suffix=".wav", prefix="readroom-dictation-")
    os.close(fd)
    out = Path(name)
    proc = subprocess.run([sox, "-q", str(path), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed",
                           str(out)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        out.unlink(missing_ok=True)
        raise AudioFormatError(f"{path.name}: not a readable audio file ({proc.stderr.strip()[:200]})")
    return out


def load_wav_16k_mono(path: str | Path) -> bytes:
    """The audio of a WAV file as 16 kHz mono int16 PCM bytes, converting rate, channels and sample format."""
    path = Path(path)
    if not path.is_file():
        raise AudioFormatError(f"{path.name}: file not found")
    try:
        with wave.open(str(path), "rb") as wf:
            rate, channels, width = wf.getframerate(), wf.getnchannels(), wf.getsampwidth()
            raw = wf.readframes(wf.getnframes())
    except (wave.Error, EOFError):
        # e.g. IEEE float or A-law WAV, or not a WAV at all: let sox read it
        tmp = _sox_convert(path)
        try:
            return load_wav_16k_mono(tmp)
        finally:
            tmp.unlink(missing_ok=True)
    if rate == SAMPLE_RATE and channels == 1 and width == 2:
        return raw
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        samples = v.astype(np.float64) / float(1 << 23)
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)
    else:
        raise AudioFormatError(f"{path.name}: unsupported sample width of {width} bytes")
    if rate != SAMPLE_RATE and shutil.which("sox"):
        tmp = _sox_convert(path)  # sox resamples with a proper anti-aliasing filter
        try:
            return load_wav_16k_mono(tmp)
        finally:
            tmp.unlink(missing_ok=True)
    return _to_mono_16k(samples, rate, channels).tobytes()


class WavFileSource:
    """Reads a WAV file as 16 kHz mono blocks of ``block_ms``; ``realtime=True`` paces blocks like a microphone
    (for latency measurements and stop/start tests)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, path: str | Path | None = None, block_ms: int = BLOCK_MS, realtime: bool = False,
                 pcm: bytes | None = None) -> None:
        if pcm is None:
            if path is None:
                raise ValueError("give a WAV path or PCM bytes")
            pcm = load_wav_16k_mono(path)
        self.pcm = pcm
        self.block_bytes = max(2, int(SAMPLE_RATE * block_ms / 1000) * SAMPLE_WIDTH)
        self.realtime = realtime
        self._pos = 0
        self._stopped = False
        self._t0: float | None = None

    @property
    def duration(self) -> float:
        return len(self.pcm) / (SAMPLE_RATE * SAMPLE_WIDTH)

    @property
    def position(self) -> float:
        """Seconds of audio handed out so far."""
        return self._pos / (SAMPLE_RATE * SAMPLE_WIDTH)

    def start(self) -> None:
        self._t0 = time.monotonic()

    def read(self, timeout: float | None = None) -> bytes | None:
        if self._stopped or self._pos >= len(self.pcm):
            return None
        if self.realtime:
            if self._t0 is None:
                self._t0 = time.monotonic()
            due = self._t0 + (self._pos + self.block_bytes) / (SAMPLE_RATE * SAMPLE_WIDTH)
            wait = due - time.monotonic()
            if wait > 0:
                if timeout is not None and wait > timeout:
                    time.sleep(timeout)
                    return b""
                time.sleep(wait)
        block = self.pcm[self._pos:self._pos + self.block_bytes]
        self._pos += len(block)
        return block

    def stop(self) -> None:
        self._stopped = True


class StreamResampler:
    """Block-by-block linear-interpolation resampler of int16 mono PCM that keeps its phase across blocks (so
    a stream resampled in pieces equals the stream resampled at once)."""

    def __init__(self, rate_in: int, rate_out: int) -> None:
        self.step = rate_in / rate_out
        self._tail = np.zeros(0)
        self._phase = 0.0  # position of the next output sample, relative to the start of _tail

    def process(self, pcm: bytes) -> bytes:
        x = np.concatenate([self._tail, np.frombuffer(pcm, dtype="<i2").astype(np.float64)])
        if x.size < 2:
            self._tail = x
            return b""
        n = int(np.floor((x.size - 1 - self._phase) / self.step)) + 1
        t = self._phase + np.arange(max(n, 0)) * self.step
        out = np.interp(t, np.arange(x.size), x)
        next_pos = self._phase + max(n, 0) * self.step
        keep = int(np.floor(next_pos))
        self._tail = x[keep:]
        self._phase = next_pos - keep
        return np.clip(np.round(out), -32768, 32767).astype("<i2").tobytes()


# -- microphone ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InputDevice:
    index: int
    name: str
    channels: int
    default_samplerate: float
    is_default: bool = False


def _sounddevice():
    try:
        import sounddevice
    except OSError as exc:  # the PortAudio library itself is missing
        raise NoInputDeviceError("Audio support is not installed (the PortAudio library is missing: install "
                                 "libportaudio2), so no microphone can be used.") from exc
    return sounddevice


def list_input_devices(sd=None) -> list[InputDevice]:
    """Devices that can record; empty when there are none (e.g. no sound card)."""
    sd = sd or _sounddevice()
    try:
        devices = sd.query_devices()
    except sd.PortAudioError:
        return []
    try:
        default_in = sd.default.device[0]
    except (TypeError, IndexError, AttributeError):
        default_in = -1
    out = []
    for i, d in enumerate(devices):
        if int(d.get("max_input_channels", 0)) > 0:
            out.append(InputDevice(int(d.get("index", i)), str(d["name"]), int(d["max_input_channels"]),
                                   float(d.get("default_samplerate", SAMPLE_RATE)), int(d.get("index", i)) == default_in))
    return out


NO_DEVICE_MESSAGE = ("No microphone found. Connect a microphone (or your USB dictation microphone) and choose "
                     "it in Settings > Dictation.")
BUSY_MESSAGE = ("The microphone is in use by another program. Close that program (or choose another "
                "microphone in Settings > Dictation) and try again.")
VANISHED_MESSAGE = ("The microphone stopped working (was it unplugged?). Dictation has stopped; the text "
                    "already in the report is kept. Reconnect it and start dictation again.")


def _classify(exc: Exception, device_label: str) -> AudioError:
    text = str(exc).lower()
    if "unavailable" in text or "busy" in text or "-9985" in text:
        return DeviceBusyError(BUSY_MESSAGE)
    if "invalid device" in text or "no such" in text or "-9996" in text or "device -1" in text \
            or "not found" in text:
        return NoInputDeviceError(NO_DEVICE_MESSAGE if not device_label else
                                  f"The microphone '{device_label}' chosen in Settings > Dictation was not "
                                  "found. Connect it or choose another one.")
    if "unanticipated host error" in text or "disconnected" in text or "-9999" in text:
        return DeviceVanishedError(VANISHED_MESSAGE)
    return AudioError(f"The microphone could not be opened ({exc}).")


class MicrophoneSource:
    """Live capture with sounddevice: 16 kHz mono int16 blocks, device by index or (part of) its name.

    ``sd`` may be given to use another module with sounddevice's API (tests). If no audio arrives for
    ``stall_timeout`` seconds while recording, the device is taken to have vanished."""

    sample_rate = SAMPLE_RATE

    def __init__(self, device: int | str | None = None, block_ms: int = BLOCK_MS, sd=None,
                 stall_timeout: float = 2.0, on_level: Callable[[float, float], None] | None = None) -> None:
        self.device = device
        self.block_ms = block_ms
        self._sd = sd
        self.stall_timeout = stall_timeout
        self.on_level = on_level
        self.level: tuple[float, float] = (-120.0, -120.0)
        self.overflows = 0
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._stream = None
        self._stopped = threading.Event()
        self._last_data = 0.0
        self._error: AudioError | None = None
        self._resampler: StreamResampler | None = None

    def _resolve_device(self, sd) -> int | None:
        devices = list_input_devices(sd)
        if not devices:
            raise NoInputDeviceError(NO_DEVICE_MESSAGE)
        if self.device is None or self.device == "":
            return None  # PortAudio's default input
        if isinstance(self.device, int) or str(self.device).isdigit():
            idx = int(self.device)
            if any(d.index == idx for d in devices):
                return idx
        else:
            wanted = str(self.device).lower()
            for d in devices:
                if wanted in d.name.lower():
                    return d.index
        raise NoInputDeviceError(f"The microphone '{self.device}' chosen in Settings > Dictation was not found. "
                                 "Connect it or choose another one.")

    def start(self) -> None:
        sd = self._sd or _sounddevice()
        self._sd = sd
        device = self._resolve_device(sd)
        self._stopped.clear()
        self._error = None
        self._resampler = None
        try:
            try:
                self._stream = self._open(sd, device, SAMPLE_RATE)
            except sd.PortAudioError as exc:
                if "sample rate" not in str(exc).lower() and "-9997" not in str(exc):
                    raise
                # the device cannot record at 16 kHz itself: record at its own rate and resample here
                rate = int(self._device_rate(sd, device))
                self._stream = self._open(sd, device, rate)
                self._resampler = StreamResampler(rate, SAMPLE_RATE)
            self._stream.start()
        except sd.PortAudioError as exc:
            self._stream = None
            raise _classify(exc, "" if self.device in (None, "") else str(self.device)) from exc
        self._last_data = time.monotonic()

    def _open(self, sd, device, rate: int):
        return sd.RawInputStream(samplerate=rate, channels=1, dtype="int16",
                                 blocksize=int(rate * self.block_ms / 1000), device=device, callback=self._callback)

    @staticmethod
    def _device_rate(sd, device) -> float:
        for d in list_input_devices(sd):
            if device is None and d.is_default or d.index == device:
                return d.default_samplerate
        return 48000.0

    def _callback(self, indata, frames, time_info, status) -> None:  # PortAudio's thread
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        block = bytes(indata)
        if self._resampler is not None:
            block = self._resampler.process(block)
        self._last_data = time.monotonic()
        self.level = level_dbfs(block)
        if self.on_level is not None:
            self.on_level(*self.level)
        self._queue.put(block)

    def read(self, timeout: float | None = None) -> bytes | None:
        try:
            return self._queue.get(timeout=timeout if timeout is not None else 0.5)
        except queue.Empty:
            pass
        if self._stopped.is_set():
            return None
        stream = self._stream
        inactive = stream is not None and not getattr(stream, "active", True)
        stalled = time.monotonic() - self._last_data > self.stall_timeout
        if inactive or stalled:
            self._error = DeviceVanishedError(VANISHED_MESSAGE)
            self._close()
            raise self._error
        return b""

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.stop()
                stream.close()
            except Exception:  # the device may be gone already; closing must not raise
                log.debug("closing the input stream failed", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self._close()


# -- push-to-talk / toggle ----------------------------------------------------------------------------------
PUSH_TO_TALK = "push_to_talk"
TOGGLE = "toggle"


@dataclass(frozen=True)
class KeyBindings:
    """Key names (as the GUI names them, e.g. "F4", "Ctrl+Space", or a dictation microphone's button codes)
    per action. ``talk`` starts/stops recording; ``command_mode`` switches between dictation and commands."""

    talk: tuple[str, ...] = ("F4",)
    command_mode: tuple[str, ...] = ("F5",)

    @classmethod
    def from_json(cls, data: dict) -> KeyBindings:
        def keys(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            v = data.get(name, default)
            return (v,) if isinstance(v, str) else tuple(str(x) for x in v)
        return cls(talk=keys("talk", cls.talk), command_mode=keys("command_mode", cls.command_mode))

    def to_json(self) -> dict:
        return {"talk": list(self.talk), "command_mode": list(self.command_mode)}


@dataclass
class TalkController:
    """Maps key presses to start/stop of recording. Push-to-talk: hold the talk key to record. Toggle: press
    to start, press again to stop. ``on_start``/``on_stop``/``on_command_mode`` are called on the caller's
    thread; key repeats while a key is held are ignored."""

    on_start: Callable[[], None]
    on_stop: Callable[[], None]
    mode: str = PUSH_TO_TALK
    keys: KeyBindings = field(default_factory=KeyBindings)
    on_command_mode: Callable[[], None] | None = None
    recording: bool = False
    _held: set = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.mode not in (PUSH_TO_TALK, TOGGLE):
            raise ValueError(f"unknown talk mode {self.mode!r}; use {PUSH_TO_TALK!r} or {TOGGLE!r}")

    def key_pressed(self, key: str) -> str | None:
        """Returns the action taken ("start", "stop", "command_mode") or None."""
        if key in self._held:
            return None  # auto-repeat
        self._held.add(key)
        if key in self.keys.command_mode:
            if self.on_command_mode is not None:
                self.on_command_mode()
            return "command_mode"
        if key not in self.keys.talk:
            return None
        if self.mode == PUSH_TO_TALK or not self.recording:
            if not self.recording:
                self.recording = True
                self.on_start()
                return "start"
            return None
        self.recording = False
        self.on_stop()
        return "stop"

    def key_released(self, key: str) -> str | None:
        self._held.discard(key)
        if key in self.keys.talk and self.mode == PUSH_TO_TALK and self.recording:
            self.recording = False
            self.on_stop()
            return "stop"
        return None
