"""Inference and streaming speed of a trained avatar: render-only FPS (one frame per call and batched), end-to-end
FPS (audio -> features -> frames -> JPEG), streaming latency over loopback WebSocket, and how many concurrent
sessions keep 25 fps.

    python bench/serve_bench.py ROOT NAME OUT.json [--device cuda] [--sessions 1,16,32,48,64,96] [--seconds 8]
        [--jpeg gpu,cpu] [--serve-device cuda:0,cuda:1] [--skip-speed]

The server runs in a subprocess (`being_nb.serve.server.serve`, admission off), the clients in processes of eight
threads each (they start together at a barrier): each streams the avatar's own audio in 20 ms chunks paced in real time and acks every
frame. Latency of a speaking frame =
when it arrived - when the chunk holding the sample at its presentation time was sent."""
import argparse, json, os, platform, re, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import numpy as np
import torch

from being_nb.inference import Engine
from being_nb.media import encode_jpeg
from being_nb.serve.protocol import SPEAKING, pack_audio, parse_frame

def sync(device):
    if torch.device(device).type == "cuda": torch.cuda.synchronize()

def timed(fn, device, seconds=2.0):
    "Calls per second of `fn` over about `seconds` (after two warm-up calls)."
    fn(); fn(); sync(device)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds: fn(); n += 1
    sync(device)
    return n/(time.perf_counter() - t0)

def speech(engine, seconds):
    import wave
    with wave.open(str(engine.avatar.audio)) as w:         # the avatar's 16 kHz mono wav (no PyAV on a GPU server)
        audio = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32)/32768
    reps = int(np.ceil(seconds*16000/len(audio)))
    return np.tile(audio, reps)[:int(seconds*16000)]

def render_only(engine, batches):
    audio = speech(engine, 8)
    features = engine.features(audio)
    n = len(audio)//640
    out = {}
    for b in batches:
        inputs = engine.inputs(features, range(b), n)
        out[b] = round(b*timed(lambda: engine.render(range(b), inputs), engine.device), 1)
    one = engine.inputs(features, [0], n)
    m, r = engine.model, engine.replay
    bg = r.backgrounds([0])[0]
    out["per_frame_render"] = round(timed(lambda: m.render(r.w2c[0], r.K, r.size, bg, one, r.expression[[0]]), engine.device), 1)
    a = engine.render(range(8), engine.inputs(features, range(8), n)).int()
    b = torch.cat([engine.render([j], engine.inputs(features, [j], n)) for j in range(8)]).int()
    out["batched_vs_single_max_diff"] = int((a - b).abs().max())
    return out

def end_to_end(engine, seconds=10.0, quality=85):
    "Audio -> features -> batched frames -> JPEG, the JPEGs encoded by a thread pool while the GPU renders."
    audio = speech(engine, seconds)
    pool = ThreadPoolExecutor(min(8, os.cpu_count()))
    list(engine.frames(audio[:16000]))
    t0 = time.perf_counter()
    futures = [pool.submit(encode_jpeg, f, quality) for f in engine.frames(audio)]
    sizes = [len(f.result()) for f in futures]
    wall = time.perf_counter() - t0
    return {"frames": len(sizes), "fps": round(len(sizes)/wall, 1), "jpeg_kib": round(np.mean(sizes)/1024, 1)}

def tick_costs(root, name, device, batches, budgets, reps=20):
    """What one tick's GPU work costs per batch size, each part timed alone (synchronised, median of `reps`): the render
    (motion field + rasteriser, as the server calls it: batch up to 64 in one call), nvJPEG of the rendered frames with
    the copy of their bytes to the host, both together, and a 16-thread CPU JPEG pool instead. With `budgets`: the
    render of an engine drawing only that many Gaussians (`--gaussians` on CUDA), and its PSNR against all of them."""
    from being_nb.serve.worker import CpuJpeg, GpuJpeg, MAX_BATCH
    from being_nb.train import psnr
    engines = {"all": Engine(name, root, device, batch=MAX_BATCH)}
    for g in budgets: engines[g] = Engine(name, root, device, batch=MAX_BATCH, gaussians=g)
    full = engines["all"]
    audio = speech(full, 8)
    features = full.features(audio)
    n = len(audio)//640
    gpu, cpu = GpuJpeg(85) if torch.device(device).type == "cuda" else None, CpuJpeg(85, threads=16)
    def median_ms(fn):
        fn(); sync(device)
        times = []
        for _ in range(reps):
            sync(device); t0 = time.perf_counter(); fn(); sync(device); times.append(time.perf_counter() - t0)
        return round(1000*float(np.median(times)), 2)
    out = []
    for b in batches:
        steps = list(range(b))
        inputs = full.inputs(features, steps, n)
        frames = full.render(steps, inputs)
        row = {"batch": b, "render_ms": median_ms(lambda: full.render(steps, inputs)),
               "cpu_jpeg16_ms": median_ms(lambda: [f.result() for f in cpu.encode(frames)])}
        if gpu is not None:
            row["nvjpeg_ms"] = median_ms(lambda: gpu.encode(frames))
            row["render_nvjpeg_ms"] = median_ms(lambda: gpu.encode(full.render(steps, inputs)))
        for g in budgets:
            e = engines[g]
            row[f"render_ms_{g}"] = median_ms(lambda: e.render(steps, inputs))
            row[f"psnr_db_{g}"] = round(psnr(e.render(steps, inputs).float()/255, frames.float()/255), 2)
        row["per_frame_ms"] = round(row.get("render_nvjpeg_ms", row["render_ms"] + row["cpu_jpeg16_ms"])/b, 3)
        print(json.dumps(row), flush=True)
        out.append(row)
    cpu.close()
    return {"gaussians": {str(k): e.budget.drawn for k, e in engines.items()}, "rows": out}

class Client(threading.Thread):
    "Streams `audio` in real time to /ws/NAME, acks every frame, records latencies."
    def __init__(self, url, audio, chunk=320, barrier=None):
        super().__init__(daemon=True)
        self.url, self.audio, self.chunk, self.barrier = url, audio, chunk, barrier
        self.sent_at, self.frames, self.error, self.ended = {}, [], None, threading.Event()

    def receive(self, ws):
        try:
            while True:
                m = ws.recv(timeout=30)
                now = time.perf_counter()
                if isinstance(m, str):
                    if json.loads(m)["type"] == "ended": self.ended.set()
                    continue
                f = parse_frame(m)
                ws.send(json.dumps({"type": "ack", "seq": f["seq"]}))
                self.frames.append((now, f["pts"], f["flags"]))
        except Exception as e:
            if not self.ended.is_set(): self.error = repr(e)

    def run(self):
        from websockets.sync.client import connect
        try:
            with connect(self.url, open_timeout=120, compression=None) as ws:
                ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate": 16000, "fps": 25, "format": "pcm_s16le"}))
                self.ready = json.loads(ws.recv(timeout=120))
                rx = threading.Thread(target=self.receive, args=(ws,), daemon=True); rx.start()
                if self.barrier is not None: self.barrier.wait(180)      # every client connected: start together
                time.sleep(0.5)
                t0 = time.perf_counter()
                for k, i in enumerate(range(0, len(self.audio), self.chunk)):
                    delay = t0 + i/16000 - time.perf_counter()
                    if delay > 0: time.sleep(delay)
                    self.sent_at[i] = time.perf_counter()
                    ws.send(pack_audio(self.audio[i:i + self.chunk], k, i))
                ws.send(json.dumps({"type": "end"}))
                self.ended.wait(30)
        except Exception as e: self.error = repr(e)

    def stats(self):
        speaking = [(t, p) for t, p, fl in self.frames if fl == SPEAKING]
        lat = [1000*(t - self.sent_at[p - p % self.chunk]) for t, p in speaking if (p - p % self.chunk) in self.sent_at]
        span = len(self.audio)/16000
        return {"speaking_frames": len(speaking), "expected": round(span*25), "lat": lat, "error": self.error,
                "lookahead_ms": getattr(self, "ready", {}).get("lookahead_ms")}

def client_group(url, audio, barrier, results, k):
    "`k` clients in a process of their own (threads), so hundreds of clients need a few processes, not hundreds."
    clients = [Client(url, audio, barrier=barrier) for _ in range(k)]
    for c in clients: c.start()
    for c in clients: c.join(len(audio)/16000 + 300)
    for c in clients: results.put(c.stats())

def start_server(root, device, max_sessions, jpeg="auto", tick_ms=None, gaussians=None, switch_interval=None, variant=None):
    "`being serve` in a subprocess, admission off (the benchmark sets the load), on a free port; `variant`: more ServeConfig fields."
    fields = dict(root=str(root), port=0, device=device, max_sessions=max_sessions, jpeg=jpeg, admission=False,
                  gaussians=gaussians, **({"tick": tick_ms/1000} if tick_ms else {}))
    fields.update(variant or {})                       # a variant's fields win over the options'
    code = ((f"import sys; sys.setswitchinterval({switch_interval}); " if switch_interval else "") +
            "from being_nb.serve.server import ServeConfig, serve; "
            "serve(ServeConfig(" + ", ".join(f"{k}={v!r}" for k, v in fields.items()) + "))")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    port = int(re.search(r":(\d+)/", line).group(1))
    return proc, port

def metrics(port) -> dict:
    "The server's /metrics, summed over labels: {sample name: value}."
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            label = s.labels.get("reason") or s.labels.get("phase") or s.labels.get("le")
            key = s.name + ("{" + label + "}" if label else "")
            out[key] = out.get(key, 0.0) + s.value
    return out

def thread_cpu(pid) -> dict:
    "CPU seconds of each thread of process `pid` so far: {thread id: s}."
    out, tick = {}, os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{tid}/stat").read()
            fields = stat[stat.rindex(")") + 2:].split()
            out[int(tid)] = (int(fields[11]) + int(fields[12]))/tick
        except (FileNotFoundError, ProcessLookupError): pass
    return out

def histogram_quantile(after, before, name, q) -> float:
    "The `q` quantile (s) of a Prometheus histogram's observations between two `metrics` snapshots (bucket upper bound)."
    prefix = name + "_bucket{"
    buckets = sorted((float(k[len(prefix):-1]), after[k] - before.get(k, 0)) for k in after
                     if k.startswith(prefix) and k[len(prefix):-1] != "+Inf")
    total = after.get(name + "_count", 0) - before.get(name + "_count", 0)
    for le, n in buckets:
        if total and n >= q*total: return le
    return float("inf")

def health(port):
    import urllib.request
    return json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10))

def streaming(root, name, device, counts, seconds, audio, jpeg="auto", per_process=8, tick_ms=None, gaussians=None,
              switch_interval=None, variant=None):
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    proc, port = start_server(root, device, max(counts) + 1, jpeg, tick_ms, gaussians, switch_interval, variant)
    results = []
    try:
        for n in counts:
            barrier, queue = ctx.Barrier(n + 1), ctx.Queue()     # the clients and this process: rates count from the
            groups = [min(per_process, n - i) for i in range(0, n, per_process)]   # start of streaming, not connecting
            procs = [ctx.Process(target=client_group, args=(f"ws://127.0.0.1:{port}/ws/{name}", audio[:int(seconds*16000)],
                                                            barrier, queue, k)) for k in groups]
            for p in procs: p.start()
            barrier.wait(240)
            before, cpu0, t0 = metrics(port), thread_cpu(proc.pid), time.monotonic()
            st = [queue.get(timeout=seconds + 400) for _ in range(n)]
            cpu1, wall = thread_cpu(proc.pid), time.monotonic() - t0
            busy = sorted(((cpu1[t] - cpu0.get(t, 0))/wall, t == proc.pid) for t in cpu1)[::-1]
            for p in procs: p.join(30)
            after = metrics(port)
            delta = lambda k: after.get(k, 0) - before.get(k, 0)
            lat = np.concatenate([s["lat"] for s in st]) if any(len(s["lat"]) for s in st) else np.array([np.nan])
            # frames per second of audio each client got: all of them at 25 fps means the server kept up
            fps = [25*s["speaking_frames"]/max(1, s["expected"]) for s in st]
            tick_s = (variant or {}).get("tick", (tick_ms or 20)/1000)      # a variant may set the tick
            period = f"being_tick_seconds_bucket{{{tick_s}}}"
            if period not in after: raise SystemExit(f"a tick of {tick_s} s is no bucket edge of being_tick_seconds")
            row = {"sessions": n, "tick_ms": round(1000*tick_s, 1), "switch_interval_s": switch_interval or sys.getswitchinterval(),
                   "variant": variant or {},
                   "server_latency_ms_p95_bucket": round(1000*histogram_quantile(after, before, "being_frame_latency_seconds", 0.95), 1),
                   "loop_thread_cpu": round(next((b for b, main in busy if main), 0.0), 2),
                   "busiest_threads_cpu": [round(b, 2) for b, _ in busy[:4]],
                   "server_cpu_cores": round(sum(b for b, _ in busy), 2), "jpeg": health(port)["devices"][0]["avatars"].get(name, {}).get("jpeg"),
                   "min_client_fps": round(min(fps), 2), "mean_client_fps": round(float(np.mean(fps)), 2),
                   "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
                   "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
                   "frames_shed": int(delta("being_frames_dropped_total{shed}")),
                   "frames_dropped_window": int(delta("being_frames_dropped_total{window}")),
                   "mean_render_batch": round(delta("being_render_batch_frames_sum")/max(1, delta("being_render_batch_frames_count")), 2),
                   "tick_ms_mean": round(1000*delta("being_tick_seconds_sum")/max(1, delta("being_tick_seconds_count")), 2),
                   # how the tick thread kept time: ticks a second over the run, the share whose work overran one
                   # period, and how late ticks began (p50/p95 bucket bounds, ms)
                   "ticks_per_s": round(delta("being_tick_seconds_count")/wall, 1),
                   "ticks_over_period": round(1 - delta(period)/max(1, delta("being_tick_seconds_count")), 3),
                   "tick_late_ms_p50_p95": [round(1000*histogram_quantile(after, before, "being_tick_lateness_seconds", q), 1)
                                            for q in (0.5, 0.95)],
                   "render_calls_per_s": round(delta("being_render_batch_frames_count")/wall, 1),   # over the same wall time
                   **{f"tick_{ph}_ms_mean": round(1000*delta(f"being_tick_phase_seconds_total{{{ph}}}")/max(1, delta("being_tick_seconds_count")), 2)
                      for ph in ("speech", "render", "other")},
                   "errors": [s["error"] for s in st if s["error"]][:3], "lookahead_ms": st[0]["lookahead_ms"]}
            print(json.dumps(row), flush=True)
            results.append(row)
            if row["latency_ms_p95"] > 3000: break
    finally:
        proc.terminate(); proc.wait(30)
    return results

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("root"); ap.add_argument("name"); ap.add_argument("out")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sessions", default="1,4,8,16,24,32")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batches", default="1,4,8,16,32")
    ap.add_argument("--jpeg", default="auto", help="comma-separated: auto, gpu, cpu (a streaming run for each)")
    ap.add_argument("--serve-device", help="the server's --device (default: --device), e.g. cuda:0,cuda:1")
    ap.add_argument("--skip-speed", action="store_true", help="streaming only")
    ap.add_argument("--tick-ms", type=float, help="the server's render tick (default: its own, 20 ms)")
    ap.add_argument("--gaussians", type=int, help="the server's Gaussian budget (default: its own: all on CUDA, CPU_GAUSSIANS on a CPU; 0: all)")
    ap.add_argument("--switch-interval", default="", help="comma-separated: the server's sys.setswitchinterval (s), a streaming run for each")
    ap.add_argument("--variants", default="[{}]", help='JSON list of ServeConfig fields, a streaming run for each, e.g. [{"loop": "asyncio"}, {"loop": "uvloop"}]')
    ap.add_argument("--tick-costs", default="", help="comma-separated batch sizes: time one tick's render and JPEG alone (`tick_costs`)")
    ap.add_argument("--budgets", default="", help="comma-separated Gaussian budgets for --tick-costs (render time and PSNR against all)")
    args = ap.parse_args()
    engine = Engine(args.name, args.root, args.device)
    machine = torch.cuda.get_device_name() if engine.device.type == "cuda" else f"{platform.processor() or 'cpu'} x{os.cpu_count()}"
    report = {"avatar": args.name, "device": machine, "size": engine.size, "timing": vars(engine.timing) if hasattr(engine.timing, "__dict__") else str(engine.timing),
              "gaussians": len(engine.model.head["means"]) + len(engine.model.mouth["means"]),
              "features": engine.model.config.features, "torch": torch.__version__}
    if not args.skip_speed:
        report["render_only_fps"] = render_only(engine, [int(b) for b in args.batches.split(",")])
        print(json.dumps(report, indent=1), flush=True)
        report["end_to_end"] = end_to_end(engine)
        print(json.dumps(report["end_to_end"]), flush=True)
    audio = speech(engine, args.seconds)
    del engine
    if args.tick_costs:
        report["tick_costs"] = tick_costs(args.root, args.name, args.device, [int(b) for b in args.tick_costs.split(",")],
                                          [int(g) for g in args.budgets.split(",") if g])
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
    torch.cuda.empty_cache() if torch.cuda.is_available() else None
    report["serve_device"] = args.serve_device or args.device
    report["serve_gaussians"] = args.gaussians if args.gaussians is not None else "server default"
    report["streaming"] = []
    for jpeg in args.jpeg.split(","):
      for interval in [float(x) for x in args.switch_interval.split(",") if x] or [None]:
        for variant in json.loads(args.variants):
          report["streaming"] += streaming(args.root, args.name, args.serve_device or args.device,
                                           [int(n) for n in args.sessions.split(",")], args.seconds, audio, jpeg,
                                           tick_ms=args.tick_ms, gaussians=args.gaussians, switch_interval=interval,
                                           variant=variant)
          Path(args.out).parent.mkdir(parents=True, exist_ok=True)
          Path(args.out).write_text(json.dumps(report, indent=1))          # what is measured so far survives a time-out
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))          # what is measured so far survives a time-out
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
