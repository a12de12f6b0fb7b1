"""Media on the real development clips and audio (skipped where ../shared is absent)."""
import numpy as np
import pytest
from being_nb.core import FPS, SAMPLE_RATE
from being_nb.media import probe, read_audio, read_frames, write_video
from conftest import AUDIO, VIDEOS, shared_file

@pytest.mark.parametrize("name", ["woman_bluescreen_7s_700_30fps.mp4", "woman_hd_uncropped_7s_1080p.mp4",
                                  "obama_address_20s_450.mp4"])
def test_clip_comes_out_at_25_fps(name):
    path = shared_file(VIDEOS/name)
    info = probe(path)
    n = sum(1 for _ in read_frames(path, size=(64, 64)))
    assert abs(n - info.video_duration*FPS) <= 1, (n, info.video_duration)
    audio = read_audio(path)
    assert abs(len(audio)/SAMPLE_RATE - info.audio_duration) <= 0.04
    assert np.sqrt(np.mean(audio**2)) > 0.01   # speech, not silence

def test_1080p_is_displayed_landscape():
    info = probe(shared_file(VIDEOS/"woman_hd_uncropped_7s_1080p.mp4"))
    assert (info.width, info.height, info.fps) == (1920, 1080, 30.0)
    frame = next(read_frames(VIDEOS/"woman_hd_uncropped_7s_1080p.mp4"))
    assert frame.shape == (1080, 1920, 3)

@pytest.mark.parametrize("name,seconds", [("de_9s_48k24bit.wav", 9.3), ("en_female_lj_10s_22k.wav", 9.7),
                                          ("en_male_radio_8s_stereo.wav", 8.0), ("zh_13s.wav", 13.1)])
def test_real_audio_formats(name, seconds):
    audio = read_audio(shared_file(AUDIO/name))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio)/SAMPLE_RATE - seconds) < 0.1
    assert np.abs(audio).max() <= 1.0

def test_round_trip_of_a_real_clip(tmp_path):
    path = shared_file(VIDEOS/"woman_address_8s_512.mp4")
    frames, audio = list(read_frames(path)), read_audio(path)
    out = write_video(tmp_path/"copy.mp4", frames, audio=audio)
    back, back_audio = list(read_frames(out)), read_audio(out)
    assert len(back) == len(frames) and back[0].shape == frames[0].shape
    assert abs(len(back_audio) - len(audio)) <= 0.04*SAMPLE_RATE
    assert np.abs(back[100].astype(int) - frames[100]).mean() < 3    # CRF 18: visually lossless
