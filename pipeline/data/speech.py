"""Speech streams for a streaming voice-activity detector (Silero VAD), synthesized offline.

Each sample is one stream of ``steps`` chunks of ``chunk`` samples at 16 kHz (Silero's 512-sample
chunks): background noise, then a real synthesized English utterance (eSpeak NG, shipped with its
voice data by the ``espeakng-loader`` package and called through ``ctypes``; nothing is
downloaded), then noise again. Leading silence, utterance, voice, speaking rate, pitch, loudness
and noise level are drawn per stream, so the detector's speech probability rises above and falls
below 0.5 within a stream.

Inputs are ``{input_name: float32 [n, steps, context + chunk]}`` in [-1, 1] (the storage rule of
``pipeline.execution`` for a stream whose ``input`` is ``[batch, context + chunk]``): as Silero's own
``OnnxWrapper`` feeds its ONNX model, each step's window is the last ``context`` samples of the
previous chunk (zeros before the first) followed by the new chunk. Labels are int64
``[n, steps]``: 1 where more than half of the chunk is inside the utterance (ground truth, not used
by fidelity).

Splits draw from ``numpy.random.default_rng([seed, split id])``: identical on every run, and
calibration and test streams differ. eSpeak NG's output is deterministic for a pinned package.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from typing import TYPE_CHECKING, Literal

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from pipeline.data import Samples

SPLITS = {"calib": 0, "test": 1}
DEFAULT_SIZES = {"calib": 64, "test": 64}
RATE = 16000
VOICES = ("en", "en-us", "en-gb-x-rp", "en-029")
WORDS = (
    "the river light morning station garden window number yellow quiet travel over under bright "
    "seven paper market simple north corner music evening silver table little people water city "
    "follow change answer summer winter early story friend mountain island coffee orange letter "
    "between before after always never maybe today tomorrow remember forget open close small large"
).split()
WORDS_PER_UTTERANCE = (2, 4)
LEAD_SILENCE_S = (0.1, 0.4)
SPEECH_PEAK = (0.25, 0.8)
NOISE_RMS = (0.001, 0.01)
SPEAKING_RATE_WPM = (140, 220)
PITCH = (30, 70)

_ESPEAK_LOCK = threading.Lock()
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE, _ESPEAK_PITCH = 1, 3  # espeak_PARAMETER
_POS_CHARACTER = 1


def load(
    split: Literal["calib", "test"] = "test",
    n: int | None = None,
    steps: int = 48,
    chunk: int = 512,
    context: int = 64,
    seed: int = 0,
    input_name: str = "input",
) -> Samples:
    """``n`` streams of ``split`` (default sizes: :data:`DEFAULT_SIZES`): ``{input_name: float32
    [n, steps, context + chunk]}`` at 16 kHz, labels int64 ``[n, steps]`` (1: the chunk is mostly speech)."""
    import numpy as np

    from pipeline.data import Samples

    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'", key="split", choices=SPLITS)
    n = DEFAULT_SIZES[split] if n is None else n
    if n < 1 or steps < 1 or chunk < 1 or not 0 <= context <= chunk:
        raise ConfigError(
            f"n, steps and chunk must be positive and context in 0..chunk, got {n}, {steps}, {chunk}, {context}",
            key="n",
        )
    rng = np.random.default_rng([seed, SPLITS[split]])
    length = steps * chunk
    streams = np.empty((n, length), dtype=np.float32)
    labels = np.empty((n, steps), dtype=np.int64)
    for i in range(n):
        streams[i], inside = _stream(rng, length)
        labels[i] = (inside.reshape(steps, chunk).mean(axis=1) > 0.5).astype(np.int64)
    padded = np.concatenate([np.zeros((n, context), dtype=np.float32), streams], axis=1)
    starts = np.arange(steps) * chunk  # window t: samples [t*chunk - context, (t+1)*chunk)
    windows = np.stack([padded[:, s : s + context + chunk] for s in starts], axis=1)
    return Samples({input_name: np.ascontiguousarray(windows)}, labels)


def _stream(rng: np.random.Generator, length: int) -> tuple[np.ndarray, np.ndarray]:
    """One stream: noise + an utterance after a random silence; ``(audio, speech mask)``."""
    import numpy as np

    words = rng.choice(WORDS, size=int(rng.integers(WORDS_PER_UTTERANCE[0], WORDS_PER_UTTERANCE[1] + 1)))
    voice = VOICES[int(rng.integers(len(VOICES)))]
    wpm = int(rng.integers(SPEAKING_RATE_WPM[0], SPEAKING_RATE_WPM[1] + 1))
    pitch = int(rng.integers(PITCH[0], PITCH[1] + 1))
    speech = synthesize(" ".join(words), voice, wpm, pitch)
    speech = speech * (rng.uniform(*SPEECH_PEAK) / max(float(np.abs(speech).max()), 1e-6))
    start = int(rng.uniform(*LEAD_SILENCE_S) * RATE)
    speech = speech[: max(length - start, 0)]
    audio = rng.normal(0.0, rng.uniform(*NOISE_RMS), size=length)
    audio[start : start + len(speech)] += speech
    inside = np.zeros(length, dtype=bool)
    inside[start : start + len(speech)] = True
    return np.clip(audio, -1.0, 1.0).astype(np.float32), inside


@functools.lru_cache(maxsize=512)
def synthesize(text: str, voice: str = "en", wpm: int = 175, pitch: int = 50) -> np.ndarray:
    """``text`` spoken by eSpeak NG, float64 in [-1, 1] at 16 kHz, leading/trailing silence trimmed."""
    import numpy as np
    from scipy.signal import resample_poly

    lib, native_rate = _espeak()
    chunks: list[np.ndarray] = []

    @ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
    def collect(wav, count, _events):
        if count > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0

    data = text.encode() + b"\0"
    with _ESPEAK_LOCK:
        lib.espeak_SetSynthCallback(collect)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ConfigError(f"eSpeak NG has no voice '{voice}'", key="voice", choices=VOICES)
        lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
        lib.espeak_SetParameter(_ESPEAK_PITCH, pitch, 0)
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, 0, None, None)
        lib.espeak_Synchronize()
    if status != 0 or not chunks:
        raise RuntimeError(f"eSpeak NG could not synthesize {text!r} (status {status})")
    wave = np.concatenate(chunks).astype(np.float64) / 32768.0
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    wave = wave[loud[0] : loud[-1] + 1] if len(loud) else wave
    return resample_poly(wave, RATE, native_rate)


@functools.lru_cache(maxsize=1)
def _espeak() -> tuple[ctypes.CDLL, int]:
    """The eSpeak NG library shipped by ``espeakng-loader``, initialised once (synchronous output)."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_Synth.argtypes = [
        ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
        ctypes.c_void_p, ctypes.c_void_p,
    ]
    rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise RuntimeError(f"eSpeak NG failed to initialise (returned {rate})")
    return lib, rate
