"""What the GIL costs the speech fronts of a busy server, and what the speech process (`serve.speech`) gives back.

N sessions' fronts are fed 20 ms of speech each per round, as a worker's tick does, three ways: on the calling
thread alone; on the calling thread beside a busy pure-Python thread (an event loop sending frames to many clients),
at the default 5 ms GIL switch interval and at 0.5 ms; and through a `SpeechProcess` beside the same busy thread.
The busy thread's own progress is counted too (what the event loop keeps). Writes JSON and markdown.

    python bench/speech_gil.py --sessions 16,48,64 --out bench/speech_gil_cpu
"""
import argparse, json, os, platform, sys, threading, time
from pathlib import Path
import numpy as np

def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines() if l.startswith("model name")), platform.processor())
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"

class Busy:
    "A pure-Python thread that never blocks; `work` counts its loops (what it got done)."
    def __init__(self):
        self.work, self.stopping = 0, False
        self.thread = threading.Thread(target=self.run, daemon=True); self.thread.start()
    def run(self):
        while not self.stopping:
            x = 0
            for i in range(1000): x += i
            self.work += 1
    def stop(self): self.stopping = True; self.thread.join()

def rounds(fronts, speech, n, k0, ops_of):
    "Mean ms of a round of `n` sessions' 20 ms pushes, over 150 rounds from round `k0`."
    t0 = time.perf_counter()
    for k in range(k0, k0 + 150): fronts.run(ops_of(k))
    return (time.perf_counter() - t0)/150*1000

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", default="16,48,64")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch
    from being_nb.audio import MelEncoder, SAMPLE_RATE
    from being_nb.serve.speech import FrontSpec, LocalFronts, PushAudio, SpeechProcess
    torch.set_num_threads(1)
    encoder = MelEncoder(); encoder.source = "mel"
    spec = FrontSpec("mel", "cpu", encoder(np.zeros(SAMPLE_RATE, np.float32))[25], speech_level=-20.0)
    rng = np.random.default_rng(0)
    t = np.arange(60*SAMPLE_RATE)/SAMPLE_RATE
    speech = (0.3*np.sin(2*np.pi*180*t)*(1 + np.sin(2*np.pi*3*t))/2 + 0.01*rng.standard_normal(len(t))).astype(np.float32)
    rows = []
    for n in [int(s) for s in args.sessions.split(",")]:
        ops_of = lambda k: [PushAudio(i, speech[(k*320) % (len(speech) - 320):][:320]) for i in range(n)]
        local, child = LocalFronts(spec.maker()), SpeechProcess(spec)
        for f in (local, child):
            for i in range(n): f.open(i)
            f.run(ops_of(0))                       # the child has loaded and answered
        row = {"sessions": n}
        row["alone_ms"] = rounds(local, speech, n, 1, ops_of)
        for label, fronts, switch in (("busy_5ms", local, 0.005), ("busy_0.5ms", local, 0.0005), ("process_busy_5ms", child, 0.005), ("process_busy_0.5ms", child, 0.0005)):
            sys.setswitchinterval(switch)
            busy = Busy(); time.sleep(0.2)
            w0, t0 = busy.work, time.perf_counter()
            row[f"{label}_ms"] = rounds(fronts, speech, n, 200, ops_of)
            row[f"{label}_busy_loops_per_s"] = (busy.work - w0)/(time.perf_counter() - t0)
            busy.stop()
        sys.setswitchinterval(0.005)
        busy = Busy(); time.sleep(1.0); w0, t0 = busy.work, time.perf_counter(); time.sleep(1.0)
        row["busy_alone_loops_per_s"] = (busy.work - w0)/(time.perf_counter() - t0); busy.stop()
        child.shutdown()
        rows.append(row); print(json.dumps(row), flush=True)
    out = Path(args.out)
    result = {"machine": machine(), "torch_threads": 1, "rows": rows}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    lines = [f"# Speech fronts and the GIL (`bench/speech_gil.py`)", "", f"Machine: {result['machine']}.", "",
             "ms per round of 20 ms pushes (one per session); the busy thread's loops/s in brackets (alone: "
             f"{rows[0]['busy_alone_loops_per_s']:.0f}).", "",
             "| sessions | alone | beside a busy thread, 5 ms switch | 0.5 ms switch | speech process, 5 ms switch | speech process, 0.5 ms switch |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['sessions']} | {r['alone_ms']:.1f} | {r['busy_5ms_ms']:.1f} ({r['busy_5ms_busy_loops_per_s']:.0f}) | "
                     f"{r['busy_0.5ms_ms']:.1f} ({r['busy_0.5ms_busy_loops_per_s']:.0f}) | "
                     f"{r['process_busy_5ms_ms']:.1f} ({r['process_busy_5ms_busy_loops_per_s']:.0f}) | "
                     f"{r['process_busy_0.5ms_ms']:.1f} ({r['process_busy_0.5ms_busy_loops_per_s']:.0f}) |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")

if __name__ == "__main__": main()
