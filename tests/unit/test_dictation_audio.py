"""Audio sources: WAV conversion and blocks, microphone error handling, capture loop, push-to-talk/toggle.

This machine has no sound card. The real sounddevice/PortAudio path is exercised where it can be (listing
devices and opening the default microphone give the "no microphone" error here). Busy and vanished devices,
and the capture loop itself, use a fake sounddevice module (``FakeSD``) because they cannot be produced
without hardware: its ``RawInputStream`` calls our callback from a thread like PortAudio does.
"""
from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
import wave

import numpy as np
import pytest

from dictation import audio
from dictation.audio import (
    PUSH_TO_TALK,
    TOGGLE,
    AudioFormatError,
    AudioSource,
    DeviceBusyError,
    DeviceVanishedError,
    KeyBindings,
    MicrophoneSource,
    NoInputDeviceError,
    StreamResampler,
    TalkController,
    WavFileSource,
    level_dbfs,
    list_input_devices,
    load_wav_16k_mono,
)


def tone(rate=16000, seconds=1.0, freq=440.0, amp=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def write_wav(path, samples, rate=16000, channels=1, width=2):
    data = np.repeat(samples[:, None], channels, axis=1).reshape(-1) if channels > 1 else samples
    if width == 1:
        raw = np.clip(np.round(data * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    elif width == 2:
        raw = np.round(data * 32767).astype("<i2").tobytes()
    elif width == 3:
        v = np.round(data * (2 ** 23 - 1)).astype(np.int32)
        raw = np.stack([(v & 0xFF), (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        raw = np.round(data * (2 ** 31 - 1)).astype("<i4").tobytes()
    with wave.open(str(path), "wb") as wf:
        wf.setnchannels(channels)
        wf.setsampwidth(width)
        wf.setframerate(rate)
        wf.writeframes(raw)
    return path


def dominant_freq(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(float)
    spec = np.abs(np.fft.rfft(x))
    return float(np.argmax(spec) * 16000 / len(x))


# -- WAV ----------------------------------------------------------------------------------------------------
def test_16k_mono_wav_is_read_as_is(tmp_path):
    p = write_wav(tmp_path / "a.wav", tone())
    with wave.open(str(p)) as wf:
        raw = wf.readframes(wf.getnframes())
    assert load_wav_16k_mono(p) == raw


@pytest.mark.parametrize("rate,channels,width", [(44100, 2, 2), (22050, 1, 2), (8000, 1, 1), (48000, 1, 3),
                                                 (16000, 2, 4), (16000, 1, 1)])
def test_other_formats_are_converted(tmp_path, rate, channels, width):
    p = write_wav(tmp_path / "b.wav", tone(rate=rate, seconds=1.0, freq=440), rate, channels, width)
    pcm = load_wav_16k_mono(p)
    assert abs(len(pcm) / 2 - 16000) <= 2  # one second at 16 kHz
    assert abs(dominant_freq(pcm) - 440) < 3  # the pitch survives resampling
    _rms, peak = level_dbfs(pcm)
    assert -12 < peak < -4  # amplitude 0.5 -> about -6 dBFS


def test_resampling_without_sox_uses_numpy(tmp_path, monkeypatch):
    monkeypatch.setattr(audio.shutil, "which", lambda name: None)
    p = write_wav(tmp_path / "c.wav", tone(rate=44100, freq=1000), 44100, 2, 2)
    pcm = load_wav_16k_mono(p)
    assert abs(len(pcm) / 2 - 16000) <= 2 and abs(dominant_freq(pcm) - 1000) < 3


@pytest.mark.skipif(not shutil.which("sox"), reason="sox is needed to make a float WAV")
def test_float_wav_goes_through_sox(tmp_path):
    src = write_wav(tmp_path / "d.wav", tone(rate=22050), 22050)
    flt = tmp_path / "float.wav"
    subprocess.run(["sox", "-q", str(src), "-e", "floating-point", "-b", "32", str(flt)], check=True)
    with pytest.raises(wave.Error):
        wave.open(str(flt)).close()  # the stdlib cannot read it ...
    pcm = load_wav_16k_mono(flt)  # ... we can
    assert abs(len(pcm) / 2 - 16000) <= 2 and abs(dominant_freq(pcm) - 440) < 3


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(AudioFormatError, match="missing.wav: file not found"):
        load_wav_16k_mono(tmp_path / "missing.wav")
    junk = tmp_path / "notes.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(AudioFormatError, match="notes.wav"):
        load_wav_16k_mono(junk)


def test_wav_source_hands_out_blocks_then_none(tmp_path):
    src = WavFileSource(write_wav(tmp_path / "e.wav", tone(seconds=0.35)), block_ms=100)
    assert isinstance(src, AudioSource)
    assert src.duration == pytest.approx(0.35)
    src.start()
    blocks = []
    while (b := src.read()) is not None:
        blocks.append(b)
    assert [len(b) for b in blocks] == [3200, 3200, 3200, 1600]
    assert src.position == pytest.approx(0.35)
    assert src.read() is None


def test_wav_source_stop_and_realtime_pacing():
    src = WavFileSource(pcm=b"\0" * 32000, block_ms=100, realtime=True)  # 1 s
    src.start()
    t0 = time.monotonic()
    for _ in range(3):
        assert src.read() is not None
    assert time.monotonic() - t0 >= 0.25  # three 100 ms blocks take about 300 ms
    assert src.read(timeout=0.0) == b""  # not due yet
    src.stop()
    assert src.read() is None


def test_level_meter_values():
    assert level_dbfs(b"") == (-120.0, -120.0)
    assert level_dbfs(b"\0\0" * 100) == (-120.0, -120.0)
    full = np.full(1600, 32767, dtype="<i2").tobytes()
    rms, peak = level_dbfs(full)
    assert rms == pytest.approx(0.0, abs=0.01) and peak == pytest.approx(0.0, abs=0.01)
    sine = (tone(seconds=0.1, amp=0.5) * 32767).astype("<i2").tobytes()
    rms, peak = level_dbfs(sine)
    assert rms == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.1)


# -- microphone: the real PortAudio on this machine -----------------------------------------------------------
def test_real_sounddevice_without_a_sound_card():
    if list_input_devices():
        pytest.skip("this machine has a microphone; the no-device path is covered with FakeSD below")
    with pytest.raises(NoInputDeviceError) as err:
        MicrophoneSource().start()
    assert err.value.kind == "no_device"
    assert "No microphone found" in str(err.value) and "Settings > Dictation" in str(err.value)


# -- microphone: a fake sounddevice for what needs hardware ---------------------------------------------------
class FakePortAudioError(Exception):
    pass


class FakeStream:
    """Calls the callback with 100 ms blocks of a tone from a thread, like PortAudio; can 'vanish'."""

    def __init__(self, sd, samplerate, channels, dtype, blocksize, device, callback):
        assert (channels, dtype) == (1, "int16")
        if samplerate not in sd.rates:
            raise FakePortAudioError("Error opening RawInputStream: Invalid sample rate [PaErrorCode -9997]")
        self.sd, self.blocksize, self.device, self.callback = sd, blocksize, device, callback
        self.samplerate = samplerate
        self.active = False
        self._thread = None
        self.closed = False

    def start(self):
        self.active = True
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self):
        n = 0
        block = (tone(rate=self.samplerate, seconds=self.blocksize / self.samplerate, amp=0.25)
                 * 32767).astype("<i2").tobytes()
        while self.active and n < self.sd.blocks_before_vanish:
            self.callback(memoryview(block), self.blocksize, None, None)
            n += 1
            time.sleep(0.01)
        if n >= self.sd.blocks_before_vanish and self.sd.vanish_marks_inactive:
            self.active = False  # PortAudio stops the stream when the device goes away

    def stop(self):
        self.active = False

    def close(self):
        self.closed = True


class FakeSD:
    PortAudioError = FakePortAudioError

    def __init__(self, devices=None, open_error=None, blocks_before_vanish=10 ** 9, vanish_marks_inactive=True,
                 rates=(16000, 44100, 48000)):
        self.rates = rates
        self.devices = devices if devices is not None else [
            {"index": 0, "name": "HDA Intel PCH: ALC3246 Analog", "max_input_channels": 2,
             "default_samplerate": 48000.0},
            {"index": 1, "name": "HDMI output", "max_input_channels": 0, "default_samplerate": 48000.0},
            {"index": 2, "name": "Philips SpeechMike III", "max_input_channels": 1, "default_samplerate": 16000.0}]
        self.open_error = open_error
        self.blocks_before_vanish = blocks_before_vanish
        self.vanish_marks_inactive = vanish_marks_inactive
        self.default = type("D", (), {"device": [0, 1]})()
        self.streams = []

    def query_devices(self):
        if not self.devices:
            raise FakePortAudioError("Error querying device -1")
        return self.devices

    def RawInputStream(self, **kw):
        if self.open_error:
            raise FakePortAudioError(self.open_error)
        s = FakeStream(self, **kw)
        self.streams.append(s)
        return s


def test_listing_devices_keeps_only_inputs():
    devs = list_input_devices(FakeSD())
    assert [(d.index, d.name, d.is_default) for d in devs] == [
        (0, "HDA Intel PCH: ALC3246 Analog", True), (2, "Philips SpeechMike III", False)]
    assert list_input_devices(FakeSD(devices=[])) == []


def test_no_device_error():
    with pytest.raises(NoInputDeviceError, match="No microphone found"):
        MicrophoneSource(sd=FakeSD(devices=[])).start()


def test_device_from_settings_by_name_or_index():
    sd = FakeSD()
    mic = MicrophoneSource(device="speechmike", sd=sd)
    mic.start()
    assert sd.streams[-1].device == 2
    mic.stop()
    mic = MicrophoneSource(device="0", sd=sd)
    mic.start()
    assert sd.streams[-1].device == 0
    mic.stop()
    with pytest.raises(NoInputDeviceError, match="'Olympus RecMic' chosen in Settings > Dictation was not found"):
        MicrophoneSource(device="Olympus RecMic", sd=sd).start()
    with pytest.raises(NoInputDeviceError):
        MicrophoneSource(device=1, sd=sd).start()  # an output-only device


def test_busy_device_error():
    sd = FakeSD(open_error="Error opening RawInputStream: Device unavailable [PaErrorCode -9985]")
    with pytest.raises(DeviceBusyError) as err:
        MicrophoneSource(sd=sd).start()
    assert err.value.kind == "device_busy" and "in use by another program" in str(err.value)


def test_capture_loop_delivers_blocks_levels_and_drains_on_stop():
    levels = []
    sd = FakeSD()
    mic = MicrophoneSource(sd=sd, on_level=lambda r, p: levels.append(p))
    mic.start()
    got = []
    while len(got) < 5:
        b = mic.read(timeout=1.0)
        assert b is not None
        if b:
            got.append(b)
    assert all(len(b) == 3200 for b in got)
    assert levels and levels[0] == pytest.approx(20 * math.log10(0.25), abs=0.1)
    assert mic.level[1] == pytest.approx(20 * math.log10(0.25), abs=0.1)
    mic.stop()
    assert sd.streams[-1].closed
    while (b := mic.read(timeout=0.05)) is not None:  # blocks captured before stop are still returned
        assert b
    assert mic.read(timeout=0.05) is None


@pytest.mark.parametrize("marks_inactive", [True, False])
def test_device_vanishing_mid_capture(marks_inactive):
    sd = FakeSD(blocks_before_vanish=3, vanish_marks_inactive=marks_inactive)
    mic = MicrophoneSource(sd=sd, stall_timeout=0.3)
    mic.start()
    blocks = []
    with pytest.raises(DeviceVanishedError) as err:
        for _ in range(100):
            b = mic.read(timeout=0.1)
            if b:
                blocks.append(b)
    assert len(blocks) == 3  # what was captured before is delivered first
    assert err.value.kind == "device_vanished" and "text already in the report is kept" in str(err.value)


def test_missing_portaudio_library_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *a, **kw):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(NoInputDeviceError, match="libportaudio2"):
        MicrophoneSource().start()


# -- push-to-talk / toggle ------------------------------------------------------------------------------------
def controller(mode, keys=None):
    calls = []
    c = TalkController(on_start=lambda: calls.append("start"), on_stop=lambda: calls.append("stop"), mode=mode,
                       keys=keys or KeyBindings(), on_command_mode=lambda: calls.append("command"))
    return c, calls


def test_push_to_talk_records_while_the_key_is_held():
    c, calls = controller(PUSH_TO_TALK)
    assert c.key_pressed("F4") == "start" and c.recording
    assert c.key_pressed("F4") is None  # auto-repeat while held
    assert c.key_pressed("A") is None
    assert c.key_released("F4") == "stop" and not c.recording
    assert c.key_released("F4") is None
    assert calls == ["start", "stop"]


def test_toggle_mode_starts_and_stops_on_presses():
    c, calls = controller(TOGGLE)
    assert c.key_pressed("F4") == "start"
    assert c.key_released("F4") is None and c.recording
    assert c.key_pressed("F4") == "stop"
    c.key_released("F4")
    assert c.key_pressed("F4") == "start"
    assert calls == ["start", "stop", "start"]


def test_keys_are_data_so_a_dictation_microphone_can_be_mapped():
    keys = KeyBindings.from_json({"talk": ["SpeechMike:Record", "F4"], "command_mode": "SpeechMike:EOL"})
    assert keys.to_json() == {"talk": ["SpeechMike:Record", "F4"], "command_mode": ["SpeechMike:EOL"]}
    c, calls = controller(PUSH_TO_TALK, keys)
    assert c.key_pressed("SpeechMike:Record") == "start"
    assert c.key_pressed("SpeechMike:EOL") == "command_mode"
    assert c.key_released("SpeechMike:Record") == "stop"
    assert calls == ["start", "command", "stop"]
    with pytest.raises(ValueError, match="unknown talk mode"):
        TalkController(on_start=lambda: None, on_stop=lambda: None, mode="always")


def test_a_device_without_16k_is_recorded_at_its_rate_and_resampled():
    sd = FakeSD(rates=(48000,))  # like many USB microphones opened directly
    mic = MicrophoneSource(sd=sd)
    mic.start()
    assert sd.streams[-1].samplerate == 48000
    pcm = b""
    while len(pcm) < 32000:
        pcm += mic.read(timeout=1.0) or b""
    mic.stop()
    assert abs(dominant_freq(pcm[:32000]) - 440) < 3
    assert len(sd.streams) == 1


@pytest.mark.parametrize("rate_in,block", [(48000, 4800), (44100, 441), (22050, 1000), (8000, 333)])
def test_stream_resampler_in_pieces_equals_at_once(rate_in, block):
    x = np.round(tone(rate=rate_in, seconds=1.0, amp=0.3) * 32767).astype("<i2")
    r = StreamResampler(rate_in, 16000)
    y = np.frombuffer(b"".join(r.process(x[i:i + block].tobytes()) for i in range(0, x.size, block)), "<i2")
    t = np.arange(y.size) * (rate_in / 16000)
    ref = np.round(np.interp(t, np.arange(x.size), x.astype(float)))
    assert abs(y.size - 16000) <= 3
    assert np.abs(y.astype(int) - ref).max() <= 1
