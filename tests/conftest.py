"""Shared fixtures: where the development material is, when it is beside the clone."""
import signal
from pathlib import Path
import pytest

# Tests that press Ctrl-C on a child (`being train`, `being pretrain`, `being serve`) need SIGINT to reach it. A
# shell started in the background without job control (nohup ... &) ignores SIGINT, and an ignored signal stays
# ignored across exec: restore the default here so every child starts with Python's KeyboardInterrupt handler.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN: signal.signal(signal.SIGINT, signal.default_int_handler)

SHARED = Path(__file__).resolve().parents[2]/"shared"
VIDEOS = SHARED/"data"/"videos"
AUDIO = SHARED/"data"/"audio"

def shared_file(path: Path) -> Path:
    "Skip the test cleanly when the development material is not beside the clone (a user's machine)."
    if not path.exists(): pytest.skip(f"{path} not present (development material only)")
    return path
