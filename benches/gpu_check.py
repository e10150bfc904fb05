#!/usr/bin/env python3
"""The GPU check: windtunnel's CUDA backend next to PyTorch on the same GPU, in one bounded run.

    benches/gpu-check.sh target/release/windtunnel OUTDIR [SECONDS]

Every step has a time limit and the whole check a deadline (default 450 s), so a short device
window still brings back what finished; results are rewritten to OUTDIR/gpu-check.json after each
step; every step's log comes back packed in OUTDIR/logs.tar.gz. Steps, in order of what they tell:

1. PyTorch eager on the four shapes, strict fp32 and TF32 — the reference (benches/torch_reference.py);
2. windtunnel w128 with an empty kernel cache (cold) and again with the cache it wrote (warm):
   process start → first step done, steady tokens/s;
3. burn's kernel fusion on against off (WINDTUNNEL_CUDA_FUSION=off, a kernel cache of its own):
   w128's first step cold and warm, kernels compiled, steady tokens/s of w128 and 9m;
4. windtunnel 9m, w256, 36m (warm where the kernels are shared, cold for what is new), each run
   twice so the second start is warm;
5. where a 9m step goes: kernel launches and GPU time per step, windtunnel (cubecl's profiling
   log) next to PyTorch (torch.profiler), and the share of the step the GPU is busy;
6. precision: windtunnel w128 under bf16-mixed against its fp32 run (the same 50 batches: every
   loss's relative difference, tokens/s of both), then PyTorch bf16-mixed on the four shapes;
7. concurrent 9m runs on the one GPU (1, 2, 4, 8 processes; 4 and 8 as threads of one worker,
   `--workers shared`): aggregate tokens/s, which kind is faster at 4, and the runs per GPU that
   reach 90% of the best aggregate (the measured default for --runs-per-device);
8. a 4-run learning-rate sweep of the 9m proxy with persistent workers vs a process per run, and
   with its four runs at once in one shared worker;
9. the coordinate check on the GPU in fp32 and bf16-mixed (every mean |x| and slope compared);
10. PyTorch torch.compile on w128, when time remains.

Every windtunnel step also records what it added to the kernel cache (`kernel_cache_added`: new
entries per cache file — cubecl's PTX table of contents counts kernels compiled, the autotune
files count tuned operations), which says where a slow first step went. At the end the cache is
packed into OUTDIR/kernel-cache.tar.gz (under 15 MB); GPU_CHECK_SEED_CACHE=that file starts a later check from
it (its first steps are then marked "seeded", not cold).

JSON fields are plain: first_step_s_cold, first_step_s_warm, tokens_per_s, torch_eager_tokens_per_s,
ratio_vs_torch_eager, mfu (model FLOPs per token from `windtunnel model` × tokens/s ÷ the GPU's dense
peak for the precision), bf16_vs_fp32_max_rel_loss_diff, runs_per_device_suggested, and per step a
status ("ok", "timeout", "failed").
"""

import datetime
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU: a dry run of this script without a GPU.
DEVICE = os.environ.get("GPU_CHECK_DEVICE", "cuda:0")
TORCH_DEVICE = "cuda" if DEVICE.startswith("cuda") else "cpu"
# GPU_CHECK_GROUPS=windtunnel,sweep runs only those groups (the names in STAGES, at the end).
GROUPS = os.environ.get("GPU_CHECK_GROUPS")
# A kernel cache packed by an earlier check (OUTDIR/kernel-cache.tar.gz) to start from.
SEED_CACHE = os.environ.get("GPU_CHECK_SEED_CACHE")
# Runs warm the learning rate up over this many steps: without it lr 0.01 makes the loss spike in
# the first steps (9m: 7.1 → 12.6), and the bf16-vs-fp32 comparison would compare chaos.
WARMUP_STEPS = 10
# name, width, depth, heads, kv_heads, batch, seq, vocab
SHAPES = {
    "w128": (128, 4, 4, 2, 16, 256, 256),
    "w256": (256, 8, 8, 4, 16, 256, 256),
    "9m": (320, 8, 5, 5, 32, 512, 256),
    "36m": (512, 12, 8, 8, 32, 512, 256),
}
# Dense peak FLOP/s by GPU and precision (vendor data sheets, SXM parts, without sparsity).
PEAKS = {
    "H200": {"fp32": 67e12, "tf32": 494.7e12, "bf16-mixed": 989.4e12},
    "H100": {"fp32": 67e12, "tf32": 494.7e12, "bf16-mixed": 989.4e12},
    "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16-mixed": 312e12},
}


class Check:
    def __init__(self, binary, out, budget_s):
        self.bin, self.out = os.path.abspath(binary), os.path.abspath(out)
        self.deadline = time.monotonic() + budget_s
        self.work = tempfile.mkdtemp(prefix="gpu-check-")
        self.cache = os.path.join(self.work, "kernel-cache")
        self.cache_unfused = os.path.join(self.work, "kernel-cache-unfused")
        # Logs gather in the work folder and come back packed (logs.tar.gz): a device window may
        # return only a few files, so OUTDIR holds three.
        self.logs = os.path.join(self.work, "logs")
        os.makedirs(self.out, exist_ok=True)
        os.makedirs(self.cache, exist_ok=True)
        os.makedirs(self.logs, exist_ok=True)
        if SEED_CACHE:
            with tarfile.open(SEED_CACHE) as tar:
                try:
                    tar.extractall(self.cache, filter="data")
                except TypeError:  # Python before 3.11.4 has no extraction filters
                    tar.extractall(self.cache)
        self.models = {}
        self.gpu_memory_peak_mib = None
        self.results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"), "commit": os.environ.get("COMMIT", "unknown"), "seeded_cache": bool(SEED_CACHE), "steps": {}}
        self.results.update(gpu_facts())
        self.peaks = next((p for k, p in PEAKS.items() if k in self.results.get("gpu", "")), None)
        self.save()

    def left(self):
        return self.deadline - time.monotonic()

    def save(self):
        with open(os.path.join(self.out, "gpu-check.json"), "w") as f:
            json.dump(self.results, f, indent=2)

    def record(self, key, value):
        self.results["steps"][key] = value
        self.save()
        print(f"== {key}: {json.dumps(value)[:400]}", flush=True)

    def run(self, key, cmd, limit_s, env=None, reserve_s=10, cwd=None):
        """Run cmd with a limit cut to the deadline; returns (status, stdout, seconds)."""
        limit = min(limit_s, self.left() - reserve_s)
        if limit < 5:
            return "skipped: no time left", "", 0.0
        log = open(os.path.join(self.logs, f"{key}.log"), "w")
        started, memory = time.monotonic(), GpuMemorySampler()
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=log, text=True, timeout=limit, env={**os.environ, **(env or {})}, cwd=cwd)
            status = "ok" if p.returncode == 0 else f"failed: exit {p.returncode}"
            return status, p.stdout, time.monotonic() - started
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return f"timeout after {limit:.0f}s", out, time.monotonic() - started
        finally:
            self.gpu_memory_peak_mib = memory.stop()

    def model(self, name):
        """`windtunnel model --json` of a shape at its sequence length (asked once per shape)."""
        if name not in self.models:
            self.models[name] = self.ask_model(name)
        return self.models[name]

    def ask_model(self, name):
        w, d, h, kv, b, s, v = SHAPES[name]
        cmd = [self.bin, "model", "--width", str(w), "--depth", str(d), "--heads", str(h), "--kv-heads", str(kv), "--vocab", str(v), "--seq-len", str(s)]
        p = subprocess.run(cmd + ["--batch-size", str(b), "--json"], capture_output=True, text=True)
        return json.loads(p.stdout)

    def mfu(self, name, tokens_per_s, precision):
        if not self.peaks or not tokens_per_s:
            return None
        return self.model(name)["flops_per_token"] * tokens_per_s / self.peaks[precision]

    def torch(self, name, precision, compile_=False, limit_s=60, profile_steps=0):
        w, d, h, kv, b, s, v = SHAPES[name]
        ffn = self.model(name)["ffn_width"]
        cmd = [sys.executable, os.path.join(HERE, "torch_reference.py"), "--device", TORCH_DEVICE, "--precision", precision, "--steps", "30", "--warmup-steps", "5"]
        cmd += ["--width", str(w), "--depth", str(d), "--heads", str(h), "--kv-heads", str(kv), "--ffn-width", str(ffn), "--vocab", str(v), "--batch-size", str(b), "--seq-len", str(s)]
        if compile_:
            cmd.append("--compile")
        if profile_steps:
            cmd += ["--profile-steps", str(profile_steps)]
        key = f"torch_{'compile' if compile_ else 'eager'}_{precision}_{name}" + ("_profiled" if profile_steps else "")
        status, out, secs = self.run(key, cmd, limit_s)
        result = {"status": status, "wall_s": secs, "gpu_memory_peak_mib": self.gpu_memory_peak_mib}
        if status == "ok":
            r = json.loads(out)
            result.update(tokens_per_s=r["tokens_per_s"], first_step_s=r["first_step_s"], losses=r["losses"], torch=r["torch"], mfu=self.mfu(name, r["tokens_per_s"], precision))
            if r.get("profile"):
                result["profile"] = r["profile"]
        self.record(key, result)
        return result

    def run_file(self, name, steps, lr=0.01, precision="fp32"):
        w, d, h, kv, b, s, v = SHAPES[name]
        tokens = steps * b * s
        path = os.path.join(self.work, f"{name}-{lr}-{precision}.toml")
        with open(path, "w") as f:
            f.write(
                f"[model]\nwidth = {w}\ndepth = {d}\nheads = {h}\nkv_heads = {kv}\nvocab = {v}\n[mup]\nbase_width = {w}\n"
                f"[optimizer]\nlr = {lr}\n[schedule]\nkind = \"constant\"\nwarmup_tokens = {WARMUP_STEPS * b * s}\n"
                f"[training]\ntokens = {tokens}\nbatch_size = {b}\nseq_len = {s}\neval_interval_tokens = {tokens}\neval_tokens = {b * s}\n"
                f"log_interval_steps = 1\ncheckpoint_every_minutes = 0\ndivergence_factor = 100\nprecision = \"{precision}\"\n[data]\nkind = \"synthetic\"\nvocab = {v}\n"
            )
        return path

    def windtunnel(self, key, name, limit_s, steps=50, precision="fp32", fusion=True):
        """One `windtunnel train` of a shape; unfused (WINDTUNNEL_CUDA_FUSION=off) runs keep their
        own kernel cache, so their first start is cold too."""
        run_dir = os.path.join(self.work, key)
        shutil.rmtree(run_dir, ignore_errors=True)
        cache = self.cache if fusion else self.cache_unfused
        cmd = [self.bin, "train", self.run_file(name, steps, precision=precision), "--out", run_dir, "--device", DEVICE, "--quiet", "--json", "--kernel-cache", cache]
        before = cache_entries(cache)
        status, out, secs = self.run(key, cmd, limit_s, env=None if fusion else {"WINDTUNNEL_CUDA_FUSION": "off"})
        result = {"status": status, "wall_s": secs, "precision": precision, "fusion": fusion, "kernel_cache_added": cache_added(before, cache_entries(cache))}
        # GPU memory the run took (nvidia-smi, CUDA context included) next to windtunnel's estimate
        # (fitted to CPU peaks), to calibrate `run`'s runs-per-GPU warning.
        result["gpu_memory_peak_mib"] = self.gpu_memory_peak_mib
        result["memory_estimate_mib"] = self.model(name)["training_memory"]["total_bytes"] / 2**20
        metrics = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
        if metrics:
            result["first_step_s"] = metrics[0].get("first_step_s")
            result["steps_done"] = metrics[-1]["step"]
            result["losses"] = [m["train_loss"] for m in metrics]
            result["tokens_per_s"] = steady_tokens_per_s(metrics)
            result["mfu"] = self.mfu(name, result["tokens_per_s"], precision)
        self.record(key, result)
        return result

    def concurrent(self, n, limit_s):
        """n `train` processes of the 9m proxy at once on the GPU: aggregate steady tokens/s."""
        procs, dirs = [], []
        limit = min(limit_s, self.left() - 10)
        if limit < 20:
            self.record(f"concurrent_9m_x{n}", {"status": "skipped: no time left"})
            return
        for i in range(n):
            d = os.path.join(self.work, f"conc{n}-{i}")
            shutil.rmtree(d, ignore_errors=True)
            dirs.append(d)
            log = open(os.path.join(self.logs, f"concurrent_9m_x{n}_{i}.log"), "w")
            cmd = [self.bin, "train", self.run_file("9m", 60), "--out", d, "--device", DEVICE, "--quiet", "--kernel-cache", self.cache]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log))
        started, status, memory = time.monotonic(), "ok", GpuMemorySampler()
        for p in procs:
            try:
                p.wait(timeout=max(1, limit - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                status = f"timeout after {limit:.0f}s"
                p.kill()
        self.record_concurrent(f"concurrent_9m_x{n}", dirs, status, memory)

    def record_concurrent(self, key, dirs, status, memory):
        """The steady tokens/s of runs trained at once (each and together) and their GPU memory."""
        rates = [steady_tokens_per_s(read_metrics(os.path.join(d, "metrics.jsonl"))) for d in dirs]
        result = {"status": status, "runs": len(dirs), "tokens_per_s_each": rates, "aggregate_tokens_per_s": sum(r or 0 for r in rates)}
        result["gpu_memory_peak_mib"] = memory.stop()
        self.record(key, result)

    def concurrent_shared(self, n, limit_s):
        """n 9m runs at once in one `windtunnel worker` (threads of one process, one CUDA context,
        a stream each): aggregate steady tokens/s, to set against n processes."""
        key = f"concurrent_shared_9m_x{n}"
        limit = min(limit_s, self.left() - 10)
        if limit < 20:
            self.record(key, {"status": "skipped: no time left"})
            return
        dirs = [os.path.join(self.work, f"shared{n}-{i}") for i in range(n)]
        requests = []
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)
            log = os.path.join(self.logs, f"{key}_{os.path.basename(d)}.log")
            requests.append(json.dumps({"run_file": self.run_file("9m", 60), "out": d, "resume": False, "resume_before_tokens": None, "log": log}))
        cmd = [self.bin, "worker", "--device", DEVICE, "--kernel-cache", self.cache]
        with open(os.path.join(self.logs, f"{key}.log"), "w") as log:
            worker = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, text=True)
            memory, status = GpuMemorySampler(), "ok"
            worker.stdin.write("\n".join(requests) + "\n")
            worker.stdin.close()
            try:
                worker.wait(timeout=limit)
            except subprocess.TimeoutExpired:
                status = f"timeout after {limit:.0f}s"
                worker.kill()
        self.record_concurrent(key, dirs, status, memory)

    def sweep(self, workers, limit_s, runs_per_device=1):
        """A 4-run learning-rate grid of the 9m proxy: wall time of `windtunnel run`."""
        sweep = os.path.join(self.work, f"sweep-{workers}.toml")
        w, d, h, kv, b, s, v = SHAPES["9m"]
        tokens = 40 * b * s
        with open(sweep, "w") as f:
            f.write(
                f'name = "lr-{workers}"\n[base]\nmup = {{ base_width = {w} }}\noptimizer = {{ lr = 0.01 }}\n'
                f'schedule = {{ kind = "constant", warmup_tokens = {WARMUP_STEPS * b * s} }}\n'
                f"training = {{ tokens = {tokens}, batch_size = {b}, seq_len = {s}, eval_interval_tokens = {tokens}, eval_tokens = {b * s}, checkpoint_every_minutes = 0, divergence_factor = 100 }}\n"
                f'data = {{ kind = "synthetic", vocab = {v} }}\n[[grid]]\nname = "lr"\nmodels = {{ presets = ["9m"] }}\n'
                f'parameters."optimizer.lr" = {{ values = [0.003, 0.01, 0.03, 0.1] }}\n'
            )
        cmd = [self.bin, "run", sweep, "--out", os.path.join(self.work, "sweeps"), "--devices", DEVICE, "--workers", workers, "--kernel-cache", self.cache, "--quiet"]
        cmd += ["--runs-per-device", str(runs_per_device)]
        key = f"sweep_9m_lr4_{workers}" + (f"_x{runs_per_device}" if runs_per_device > 1 else "")
        status, _, secs = self.run(key, cmd, limit_s)
        self.record(key, {"status": status, "wall_s": secs, "runs_per_device": runs_per_device})


    def kernel_profile(self, name, steps, limit_s):
        """`steps` warm training steps with every kernel timed one at a time (cubecl's profiling
        log, set by a cubecl.toml in the run's folder): launches and GPU time by kernel."""
        key = f"kernel_profile_{name}_{steps}"
        cwd = os.path.join(self.work, key)
        shutil.rmtree(cwd, ignore_errors=True)
        os.makedirs(cwd)
        log = os.path.join(self.logs, f"{key}.kernels.log")
        with open(os.path.join(cwd, "cubecl.toml"), "w") as f:
            f.write(f'[profiling.logger]\nlevel = "medium"\nfile = "{log}"\nappend = false\n')
        cmd = [self.bin, "train", self.run_file(name, steps), "--out", os.path.join(cwd, "run"), "--device", DEVICE, "--quiet", "--kernel-cache", self.cache]
        status, _, secs = self.run(key, cmd, limit_s, cwd=cwd)
        kernels = read_kernel_log(log)
        result = {"status": status, "wall_s": secs, "steps": steps, "launches": sum(c for c, _ in kernels.values()), "gpu_ms": sum(ms for _, ms in kernels.values())}
        self.record(key, result)
        return result, kernels

    def coord_check(self, precision, limit_s):
        """`windtunnel coord-check` on the GPU (µP, widths 64..512, 3 steps) at one precision."""
        key = f"coord_check_{precision}"
        cmd = [self.bin, "coord-check", "--device", DEVICE, "--precision", precision, "--json", "--kernel-cache", self.cache]
        status, out, secs = self.run(key, cmd, limit_s)
        result = {"status": status, "wall_s": secs, "gpu_memory_peak_mib": self.gpu_memory_peak_mib}
        if status == "ok":
            r = json.loads(out)
            result.update(records=r["records"], slopes=r["slopes"], losses=r["losses"])
        self.record(key, result)
        return result


class GpuMemorySampler:
    """Peak GPU memory in use while a step runs, above what was in use before it (MiB; nvidia-smi
    every 200 ms). Inert (peak None) off the GPU or without nvidia-smi."""

    def __init__(self):
        self.peak, self.proc, self.thread = None, None, None
        if TORCH_DEVICE != "cuda" or not shutil.which("nvidia-smi"):
            return
        query = ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", DEVICE.split(":")[-1]]
        try:
            self.base = float(subprocess.run(query, capture_output=True, text=True, timeout=10).stdout.split()[0])
            self.proc = subprocess.Popen(query + ["-lms", "200"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        except Exception:  # noqa: BLE001 - no number, no harm
            return
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        for line in self.proc.stdout:
            try:
                used = float(line.strip())
            except ValueError:
                continue
            self.peak = max(self.peak or 0.0, used - self.base)

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.thread.join(timeout=5)
        return self.peak


def cache_entries(cache):
    """Entries per file of a kernel cache: lines of cubecl's table-of-contents and autotune logs."""
    entries = {}
    for root, _, files in os.walk(cache):
        for name in files:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, cache)
            try:
                with open(path, "rb") as f:
                    entries[rel] = f.read().count(b"\n") if name.endswith(".json.log") else os.path.getsize(path)
            except OSError:
                pass
    return entries


def cache_added(before, after):
    """What a step added: new lines per .json.log file, new bytes per other file."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)}


DURATION_UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def read_kernel_log(path):
    """cubecl's profiling lines `| 1.234ms | name`: {name: (launches, milliseconds)}."""
    kernels = {}
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError:
        return kernels
    for line in lines:
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 3 or not parts[1]:
            continue
        number = parts[1].rstrip("nµums")
        unit = parts[1][len(number):]
        try:
            ms = float(number) * DURATION_UNITS[unit]
        except (ValueError, KeyError):
            continue
        count, total = kernels.get(parts[2], (0, 0.0))
        kernels[parts[2]] = (count + 1, total + ms)
    return kernels


def read_metrics(path):
    try:
        return [json.loads(line) for line in open(path) if line.strip()]
    except (OSError, ValueError):
        return []


def steady_tokens_per_s(metrics):
    """Tokens over training seconds of the steps after the third (one metrics line per step)."""
    rows = metrics[3:]
    if len(rows) < 2:
        return None
    tokens = sum(r["tokens"] - p["tokens"] for p, r in zip(rows, rows[1:]))
    seconds = sum((r["tokens"] - p["tokens"]) / r["tokens_per_s"] for p, r in zip(rows, rows[1:]))
    return tokens / seconds


def gpu_facts():
    facts = {}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout
        name, driver, memory = [x.strip() for x in q.splitlines()[0].split(",")]
        facts.update(gpu=name, driver=driver, gpu_memory=memory)
    except Exception as e:  # noqa: BLE001 - any failure is reported, not fatal
        facts["gpu_error"] = str(e)
    try:
        facts["nvcc"] = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[-1]
    except Exception:  # noqa: BLE001
        pass
    return facts


def windtunnel_w128_starts(c):
    """w128's first step with a cold (or seeded) and a warm kernel cache."""
    c.windtunnel(f"windtunnel_w128_{cold_start()}", "w128", limit_s=200)
    c.windtunnel("windtunnel_w128_warm", "w128", limit_s=60)
    summarize(c)


def fusion_against_unfused(c):
    """burn's kernel fusion off (WINDTUNNEL_CUDA_FUSION=off), with a kernel cache of its own: w128's
    first step cold and warm, kernels compiled, steady tokens/s of w128 and 9m. Runs right after
    w128's fused starts, before the other shapes: when compiling is what takes the time, this is
    the comparison that says whether fusion is why."""
    c.windtunnel("windtunnel_w128_unfused_cold", "w128", limit_s=120, fusion=False)
    c.windtunnel("windtunnel_w128_unfused_warm", "w128", limit_s=45, fusion=False)
    c.windtunnel("windtunnel_9m_unfused", "9m", limit_s=60, fusion=False)
    summarize(c)


def windtunnel_other_shapes(c):
    """9m, w256 and 36m, each started twice (the second start warm)."""
    for name in ["9m", "w256", "36m"]:
        c.windtunnel(f"windtunnel_{name}_first", name, limit_s=120)
        c.windtunnel(f"windtunnel_{name}_second", name, limit_s=60)
    summarize(c)


def cold_start():
    return "seeded" if SEED_CACHE else "cold"


def summarize(c):
    """`summary` (per shape: first steps, steady tokens/s next to PyTorch, MFU) and `fusion` (fused
    against unfused), from the steps recorded so far."""
    steps = c.results["steps"]
    get = lambda key, field: steps.get(key, {}).get(field)
    starts = {"w128": (f"windtunnel_w128_{cold_start()}", "windtunnel_w128_warm")}
    starts.update({name: (f"windtunnel_{name}_first", f"windtunnel_{name}_second") for name in ["9m", "w256", "36m"]})
    summary = {}
    for name, (first, second) in starts.items():
        tps = get(second, "tokens_per_s")
        torch_tps, torch_tf32 = get(f"torch_eager_fp32_{name}", "tokens_per_s"), get(f"torch_eager_tf32_{name}", "tokens_per_s")
        summary[name] = {
            f"first_step_s_{cold_start()}" if name == "w128" else "first_step_s_first_start": get(first, "first_step_s"),
            "first_step_s_warm": get(second, "first_step_s"),
            "tokens_per_s": tps,
            "torch_eager_tokens_per_s": torch_tps,
            "ratio_vs_torch_eager": (tps / torch_tps) if tps and torch_tps else None,
            "torch_eager_tf32_tokens_per_s": torch_tf32,
            "ratio_vs_torch_eager_tf32": (tps / torch_tf32) if tps and torch_tf32 else None,
            "mfu": c.mfu(name, tps, "fp32"),
            "mfu_vs_tf32_peak": c.mfu(name, tps, "tf32"),
            "gpu_memory_peak_mib": get(second, "gpu_memory_peak_mib"),
            "memory_estimate_mib": get(second, "memory_estimate_mib"),
        }
    c.results["summary"] = summary
    cold = f"windtunnel_w128_{cold_start()}"
    c.results["fusion"] = {
        "w128_first_step_s_cold": {"fused": get(cold, "first_step_s"), "unfused": get("windtunnel_w128_unfused_cold", "first_step_s")},
        "w128_first_step_s_warm": {"fused": get("windtunnel_w128_warm", "first_step_s"), "unfused": get("windtunnel_w128_unfused_warm", "first_step_s")},
        "w128_kernel_cache_added_cold": {"fused": get(cold, "kernel_cache_added"), "unfused": get("windtunnel_w128_unfused_cold", "kernel_cache_added")},
        "w128_tokens_per_s": {"fused": get("windtunnel_w128_warm", "tokens_per_s"), "unfused": get("windtunnel_w128_unfused_warm", "tokens_per_s")},
        "9m_tokens_per_s": {"fused": get("windtunnel_9m_second", "tokens_per_s"), "unfused": get("windtunnel_9m_unfused", "tokens_per_s")},
        "fused_cold_start_seeded": bool(SEED_CACHE),
    }
    c.save()


def where_the_step_goes(c):
    """Launches and GPU time per training step of the 9m proxy, windtunnel (cubecl's profiling
    log; the difference of 8 and 3 steps, so start-up and evaluation cancel) next to PyTorch
    eager (torch.profiler), and the share of the unprofiled step the GPU is busy."""
    (short, _), (long, kernels) = c.kernel_profile("9m", 3, limit_s=60), c.kernel_profile("9m", 8, limit_s=60)
    steps = long["steps"] - short["steps"]
    step_ms = None
    tps = c.results["steps"].get("windtunnel_9m_second", {}).get("tokens_per_s")
    if tps:
        w, d, h, kv, b, s, v = SHAPES["9m"]
        step_ms = 1000 * b * s / tps
    per_step = lambda key: (long[key] - short[key]) / steps if long["status"] == "ok" and short["status"] == "ok" else None  # noqa: E731
    gpu_ms = per_step("gpu_ms")
    top = sorted(kernels.items(), key=lambda kv: -kv[1][1])[:15]
    torch = c.torch("9m", "tf32", limit_s=60, profile_steps=5)
    c.results["step_profile_9m"] = {
        "windtunnel_launches_per_step": per_step("launches"),
        "windtunnel_gpu_ms_per_step": gpu_ms,
        "windtunnel_step_ms_unprofiled": step_ms,
        "windtunnel_gpu_busy_fraction": gpu_ms / step_ms if gpu_ms and step_ms else None,
        "windtunnel_top_kernels_8_steps": [{"name": n[:160], "launches": cnt, "ms": ms} for n, (cnt, ms) in top],
        "torch_tf32": (torch.get("profile") if torch else None),
    }
    c.save()


def bf16_mixed_against_fp32(c):
    """bf16-mixed against fp32 on w128: the same 50 batches, every loss compared, both speeds."""
    fp32 = c.results["steps"].get("windtunnel_w128_warm") or c.windtunnel("windtunnel_w128_warm", "w128", limit_s=60)
    bf16 = c.windtunnel("windtunnel_w128_bf16_mixed", "w128", limit_s=150, precision="bf16-mixed")
    a, b = fp32.get("losses") or [], bf16.get("losses") or []
    diffs = [abs(x - y) / abs(x) for x, y in zip(a, b)]
    torch_bf16 = c.torch("w128", "bf16-mixed", limit_s=45)
    c.results["precision"] = {
        "shape": "w128",
        "steps_compared": len(diffs),
        "bf16_vs_fp32_max_rel_loss_diff": max(diffs) if diffs else None,
        "tolerance": 0.02,
        "tokens_per_s_fp32": fp32.get("tokens_per_s"),
        "tokens_per_s_bf16_mixed": bf16.get("tokens_per_s"),
        "torch_eager_tokens_per_s_bf16_mixed": torch_bf16.get("tokens_per_s"),
    }
    c.save()
    for name in ["9m", "w256", "36m"]:
        c.torch(name, "bf16-mixed", limit_s=45)


def concurrency(c):
    """Aggregate tokens/s of 1, 2, 4, 8 concurrent 9m runs as processes (`--workers persistent`)
    and of 4 and 8 as threads of one worker (`--workers shared`); the fewest runs per GPU reaching
    90% of the best, and which kind of worker is faster at 4."""
    for n in [1, 4]:
        c.concurrent(n, limit_s=75)
    c.concurrent_shared(4, limit_s=75)
    for n in [2, 8]:
        c.concurrent(n, limit_s=75)
    c.concurrent_shared(8, limit_s=75)

    def measured(prefix, counts):
        # Only counts that finished with every run measured are compared.
        steps = {n: c.results["steps"].get(f"{prefix}_9m_x{n}", {}) for n in counts}
        return {n: s["aggregate_tokens_per_s"] for n, s in steps.items() if s.get("status") == "ok" and None not in s.get("tokens_per_s_each", [None])}

    rates, shared = measured("concurrent", [1, 2, 4, 8]), measured("concurrent_shared", [4, 8])
    if 1 in rates:
        shared[1] = rates[1]
    best = max([*rates.values(), *shared.values()], default=0)
    suggested = [n for n, r in [*rates.items(), *shared.items()] if r >= 0.9 * best]
    c.results["concurrency"] = {
        "aggregate_tokens_per_s": {str(n): r for n, r in rates.items()},
        "aggregate_tokens_per_s_shared": {str(n): r for n, r in shared.items() if n > 1},
        "speedup_x4_vs_x1": rates[4] / rates[1] if rates.get(4) and rates.get(1) else None,
        "speedup_x4_vs_x1_shared": shared[4] / rates[1] if shared.get(4) and rates.get(1) else None,
        "faster_at_x4": None if not (rates.get(4) and shared.get(4)) else ("shared" if shared[4] > rates[4] else "persistent"),
        "runs_per_device_suggested": min(suggested) if len(rates) + len(shared) >= 3 and suggested else None,
    }
    c.save()


def coordinate_checks(c):
    """The coordinate check in fp32 and bf16-mixed: largest relative mean |x| and slope differences."""
    fp32, bf16 = c.coord_check("fp32", limit_s=120), c.coord_check("bf16-mixed", limit_s=90)
    if fp32["status"] != "ok" or bf16["status"] != "ok":
        return
    rel = [abs(x["mean_abs"] - y["mean_abs"]) / x["mean_abs"] for x, y in zip(fp32["records"], bf16["records"])]
    slope = [abs(x["slope"] - y["slope"]) for x, y in zip(fp32["slopes"], bf16["slopes"])]
    hidden = lambda r: max(abs(x["slope"]) for x in r["slopes"] if x["step"] >= 1 and x["layer"].endswith((".attention", ".ffn")))  # noqa: E731
    c.results["coord_check"] = {
        "max_rel_mean_abs_diff": max(rel),
        "max_slope_diff": max(slope),
        "max_hidden_slope_fp32": hidden(fp32),
        "max_hidden_slope_bf16_mixed": hidden(bf16),
        "tolerance": {"rel_mean_abs": 0.02, "slope": 0.05},
    }
    c.save()


def pack(c):
    """OUTDIR/logs.tar.gz (every step's log), and the kernel cache as OUTDIR/kernel-cache.tar.gz
    (for GPU_CHECK_SEED_CACHE) when under 15 MB, as a device window returns files of 16 MiB."""
    with tarfile.open(os.path.join(c.out, "logs.tar.gz"), "w:gz") as tar:
        tar.add(c.logs, arcname="logs")
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(c.cache) for f in fs)
    c.results["kernel_cache_bytes"] = size
    if 0 < size < 15e6:
        with tarfile.open(os.path.join(c.out, "kernel-cache.tar.gz"), "w:gz") as tar:
            tar.add(c.cache, arcname=".")
    c.save()


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: gpu_check.py WINDTUNNEL_BINARY OUTDIR [SECONDS]")
    c = Check(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 450)
    try:
        run_groups(c)
    finally:
        try:
            summarize(c)
        finally:
            pack(c)
    print(f"== done with {c.left():.0f}s to spare; {os.path.join(c.out, 'gpu-check.json')}")


def torch_references(c):
    """PyTorch eager on every shape, strict fp32 (allow_tf32 off, PyTorch's default) and TF32:
    burn's CUDA matmuls may read f32 as TF32, so tf32 (nanoGPT's setting) is the like-for-like
    reference."""
    for name in SHAPES:
        for precision in ["fp32", "tf32"]:
            c.torch(name, precision, limit_s=45)


def persistent_against_per_run(c):
    c.sweep("persistent", limit_s=90)
    c.sweep("per-run", limit_s=90)
    # The same four runs at once, in one shared worker.
    c.sweep("shared", limit_s=90, runs_per_device=4)


def torch_compiled(c):
    c.torch("w128", "fp32", compile_=True, limit_s=90)


# (group, stage) in the order they run: fusion off runs between w128's fused starts and the
# other shapes, so a window that compiling eats still compares the two.
STAGES = [
    ("torch", torch_references),
    ("windtunnel", windtunnel_w128_starts),
    ("fusion", fusion_against_unfused),
    ("windtunnel", windtunnel_other_shapes),
    ("profile", where_the_step_goes),
    ("precision", bf16_mixed_against_fp32),
    ("concurrent", concurrency),
    ("sweep", persistent_against_per_run),
    ("coord", coordinate_checks),
    ("compile", torch_compiled),
]


def run_groups(c):
    chosen = GROUPS.split(",") if GROUPS else [group for group, _ in STAGES]
    for group, stage in STAGES:
        if group in chosen:
            stage(c)


if __name__ == "__main__":
    main()
