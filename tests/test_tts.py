"""Offline speech: English and German, on a machine with no system espeak."""
import numpy as np
from being_nb.tts import synthesize

def test_english_and_german_are_spoken():
    for text, lang in [("The quick brown fox jumps over the lazy dog.", "en"),
                       ("Der schnelle braune Fuchs springt über den faulen Hund.", "de")]:
        s = synthesize(text, lang=lang)
        assert s.sample_rate == 16000 and 1.5 < s.duration < 6
        assert np.sqrt(np.mean(s.audio**2)) > 0.01
        assert len(s.words) == len(text.split())

def test_duration_grows_with_text():
    short = synthesize("Hello.").duration
    long = synthesize("Hello, and welcome to a much longer sentence than the first one.").duration
    assert long > 2*short
