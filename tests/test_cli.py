"""The `being` command as a user runs it: the installed entry point, in a separate process."""
import json, shutil, subprocess, sys
import being_nb

def being(*args, timeout=120):
    exe = shutil.which("being") or sys.exit("the `being` entry point is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)

def test_version():
    r = being("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"being_nb {being_nb.__version__}"

def test_help_lists_subcommands():
    r = being("--help")
    assert r.returncode == 0 and "info" in r.stdout and "usage: being" in r.stdout

def test_info_reports_the_machine():
    r = being("info", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["being_nb"] == being_nb.__version__
    assert d["gsplat"]["importable"] is True
    assert d["pyav"]["h264_encoder"] and d["pyav"]["aac_encoder"]
    assert d["tts"]["voices"] > 50
    assert d["audio_encoders"]["default"]            # mel, or the encoder $BEING_AUDIO_ENCODER names

def test_info_finds_the_face_model_through_the_environment(tmp_path):
    task = tmp_path/"face_landmarker.task"; task.write_bytes(b"x")
    import os
    env = {**os.environ, "BEING_FACE_LANDMARKER": str(task), "BEING_CACHE": str(tmp_path/"cache")}
    r = subprocess.run([shutil.which("being"), "info", "--json"], capture_output=True, text=True, env=env, timeout=120)
    d = json.loads(r.stdout)["mediapipe"]
    assert d["face_landmarker"] == str(task) and d["face_landmarker_found_by"] == "$BEING_FACE_LANDMARKER"

def test_unknown_command_fails_cleanly():
    r = being("fly")
    assert r.returncode == 2 and "invalid choice" in r.stderr and "Traceback" not in r.stderr
