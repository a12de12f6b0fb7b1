"""Shared fixtures: where the development material is, when it is beside the clone."""
from pathlib import Path
import pytest

SHARED = Path(__file__).resolve().parents[2]/"shared"
VIDEOS = SHARED/"data"/"videos"
AUDIO = SHARED/"data"/"audio"

def shared_file(path: Path) -> Path:
    "Skip the test cleanly when the development material is not beside the clone (a user's machine)."
    if not path.exists(): pytest.skip(f"{path} not present (development material only)")
    return path
