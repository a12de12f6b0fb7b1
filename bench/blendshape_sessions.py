"""How many blendshape-only WebSocket sessions one `being serve` carries (issue 14).

python bench/blendshape_sessions.py ROOT NAME OUT.json [--sessions 8,32,64] [--seconds 10]

The server in a subprocess on the CPU; N client threads (in processes of 16) each stream the same synthesized
speech in 20 ms chunks in real time with `"outputs": ["blendshapes"]`. A message's latency is its arrival minus the
send time of the chunk holding its frame's first sample (80 ms of look-ahead and the mel window are in it).
"""
import argparse, json, multiprocessing as mp, platform, re, subprocess, sys, threading, time
from pathlib import Path
import numpy as np

def client(url, speech, out, barrier):
    from websockets.sync.client import connect
    from being_nb.serve.protocol import pack_audio
    sent, lat, frames = {}, [], 0
    try:
        with connect(url, open_timeout=30, max_size=2**22) as ws:
            ws.send(json.dumps({"type": "hello", "v": 1, "outputs": ["blendshapes"]}))
            json.loads(ws.recv(timeout=60))
            done = threading.Event()
            def receive():
                nonlocal frames
                while True:
                    m = json.loads(ws.recv(timeout=60))
                    if m["type"] == "blendshapes":
                        frames += 1
                        at = sent.get(m["pts"] - m["pts"] % 320)
                        if at is not None: lat.append(time.perf_counter() - at)
                    elif m["type"] == "ended": break
            rx = threading.Thread(target=receive); rx.start()
            barrier.wait(60)
            t0 = time.perf_counter()
            for k, i in enumerate(range(0, len(speech), 320)):
                time.sleep(max(0, t0 + i/16000 - time.perf_counter()))
                sent[i] = time.perf_counter()
                ws.send(pack_audio(speech[i:i + 320], k, i))
            ws.send(json.dumps({"type": "end"}))
            rx.join(60)
        out.append({"frames": frames, "lat": lat})
    except Exception as e: out.append({"frames": frames, "lat": lat, "error": repr(e)})

def group(url, speech, k, queue, barrier):
    out = []
    threads = [threading.Thread(target=client, args=(url, speech, out, barrier)) for _ in range(k)]
    for t in threads: t.start()
    for t in threads: t.join()
    queue.put(out)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--sessions", default="8,32,64"); ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    from being_nb.tts import synthesize
    speech = synthesize("Papa made a big map of the moon, and we sailed to the sea for a day in the sun. " * 3).audio
    speech = speech[:int(a.seconds*16000)]
    import shutil
    proc = subprocess.Popen([shutil.which("being"), "serve", "--root", a.root, "--port", "0", "--device", "cpu",
                             "--max-sessions", "1000", "--no-admission"], stdout=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+)/", proc.stdout.readline()).group(1))
    rows = []
    try:
        ctx = mp.get_context("spawn")
        for n in [int(s) for s in a.sessions.split(",")]:
            barrier, queue = ctx.Barrier(n), ctx.Queue()
            sizes = [min(16, n - i) for i in range(0, n, 16)]
            procs = [ctx.Process(target=group, args=(f"ws://127.0.0.1:{port}/ws/{a.name}", speech, k, queue, barrier)) for k in sizes]
            for p in procs: p.start()
            res = [r for _ in procs for r in queue.get(timeout=a.seconds + 300)]
            for p in procs: p.join(30)
            lat = np.concatenate([r["lat"] for r in res]) if any(r["lat"] for r in res) else np.array([np.nan])
            expected = round(len(speech)*25/16000)
            row = {"sessions": n, "min_frames": min(r["frames"] for r in res), "expected_frames": expected,
                   "latency_ms_p50": round(1000*float(np.percentile(lat, 50)), 1),
                   "latency_ms_p95": round(1000*float(np.percentile(lat, 95)), 1),
                   "errors": [r["error"] for r in res if "error" in r][:3]}
            print(json.dumps(row), flush=True); rows.append(row)
    finally:
        proc.terminate(); proc.wait(30)
    Path(a.out).write_text(json.dumps({"machine": f"{platform.machine()}, 2 cores" , "seconds": a.seconds, "rows": rows}, indent=1))

if __name__ == "__main__": main()
