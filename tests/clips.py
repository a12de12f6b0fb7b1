"""Test videos built on the spot from scikit-image's public-domain astronaut portrait and offline speech."""
from pathlib import Path
import numpy as np
from skimage import data
from being_nb.core import FPS, SAMPLE_RATE
from being_nb.media import write_video
from being_nb.tts import synthesize

def portrait(size=256) -> np.ndarray:
    "The astronaut's head and shoulders, square, `size` pixels."
    from PIL import Image
    img = data.astronaut()[0:300, 90:390]                      # head and shoulders
    return np.asarray(Image.fromarray(img).resize((size, size)))

def speech(seconds: float) -> np.ndarray:
    "Real (synthetic) speech of about `seconds`, padded or cut to exactly that length."
    text = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest again."
    audio = synthesize(text).audio
    n = round(seconds*SAMPLE_RATE)
    return np.resize(audio, n).astype(np.float32) if len(audio) < n else audio[:n]

def clip(path: Path, seconds: float = 4.0, frame=None, audio="speech", fps: float = FPS, size: int = 256) -> Path:
    """Write a test video: `frame(i, portrait)` makes frame i (default: the still portrait, swaying slightly).
    `audio` is "speech", "silent" or None (no audio track)."""
    base = portrait(size)
    def sway(i, img):
        return np.roll(img, int(round(3*np.sin(i/7))), axis=1)
    make = frame or sway
    n = round(seconds*fps)
    sound = {"speech": speech(seconds), "silent": np.zeros(round(seconds*SAMPLE_RATE), np.float32), None: None}[audio]
    return write_video(path, (make(i, base) for i in range(n)), fps=fps, audio=sound)
