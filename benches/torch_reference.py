#!/usr/bin/env python3
"""windtunnel's µP MiniCPM model in PyTorch: the reference its speed is measured against.

The same network as src/model/transformer.rs — token embedding tied with the output layer,
pre-RMSNorm (eps 1e-5), rotary position embedding (theta 10000, rotate-half pairs (i, i + d/2)),
grouped-query causal attention, SwiGLU feed-forward, no biases — with the same µP rules as
src/model/mup.rs (m = width / base_width): embedding output × scale_emb, each residual branch
× scale_depth/√depth, logits × 1/m, hidden matrices initialised with std init_std/√m and trained
at lr/m, the embedding with std init_std at lr; and the same optimizer as src/train/optimizer.rs:
AdamW (β = 0.9, 0.95, eps 1e-8, decoupled weight decay 0.1 applied before the Adam step, norms
not decayed) after clipping the global gradient norm at 1.0. Weights are drawn by torch's
generator, not windtunnel's, so losses agree in distribution (the first loss is ≈ ln vocab for
both), not bit for bit.

It times training steps on random tokens and prints one JSON object:

    python benches/torch_reference.py --width 128 --depth 4 --heads 4 --kv-heads 2 --ffn-width 320 \
        --vocab 256 --batch-size 16 --seq-len 256 --steps 30 --threads 2
    python benches/torch_reference.py ... --device cuda --precision bf16-mixed --compile

Fields: tokens_per_s (steady: the steps after --warmup-steps), first_step_s (interpreter start to
the end of the first step), step_ms, losses (the first five), torch, device, precision, compiled,
flush_denormal; with --profile-steps N, profile: kernels_per_step, device_ms_per_step and the ten
costliest kernels (torch.profiler).
"""

import time

START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


class RMSNorm(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rope_tables(seq_len, head_dim, device):
    half = head_dim // 2
    inv = 10000.0 ** (-(2 * (torch.arange(head_dim, dtype=torch.float64) % half)) / head_dim)
    angles = torch.arange(seq_len, dtype=torch.float64)[:, None] * inv[None, :]
    return angles.cos().float().to(device), angles.sin().float().to(device)


def apply_rope(x, cos, sin):
    # x: [batch, heads, seq, head_dim]; rotate_half(x) = (-x2, x1).
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = a.heads, a.kv_heads, a.width // a.heads
        kv_width = self.kv_heads * self.head_dim
        self.attention_norm, self.ffn_norm = RMSNorm(a.width), RMSNorm(a.width)
        self.wq = nn.Linear(a.width, a.width, bias=False)
        self.wk = nn.Linear(a.width, kv_width, bias=False)
        self.wv = nn.Linear(a.width, kv_width, bias=False)
        self.wo = nn.Linear(a.width, a.width, bias=False)
        self.w_gate = nn.Linear(a.width, a.ffn_width, bias=False)
        self.w_up = nn.Linear(a.width, a.ffn_width, bias=False)
        self.w_down = nn.Linear(a.ffn_width, a.width, bias=False)

    def attention(self, x, cos, sin):
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=self.kv_heads != self.heads)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))

    def forward(self, x, cos, sin, residual):
        x = x + self.attention(self.attention_norm(x), cos, sin) * residual
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h)) * residual


class Transformer(nn.Module):
    def __init__(self, a):
        super().__init__()
        m = a.width / a.base_width
        self.embedding = nn.Parameter(torch.randn(a.vocab, a.width) * a.init_std)
        self.blocks = nn.ModuleList(Block(a) for _ in range(a.depth))
        self.final_norm = RMSNorm(a.width)
        self.embedding_multiplier = a.scale_emb
        self.residual = a.scale_depth / math.sqrt(a.depth)
        self.logit_multiplier = 1.0 / m
        for block in self.blocks:
            for lin in (block.wq, block.wk, block.wv, block.wo, block.w_gate, block.w_up, block.w_down):
                nn.init.normal_(lin.weight, std=a.init_std / math.sqrt(m))
        self.register_buffer("cos", rope_tables(a.seq_len, a.width // a.heads, "cpu")[0], persistent=False)
        self.register_buffer("sin", rope_tables(a.seq_len, a.width // a.heads, "cpu")[1], persistent=False)

    def forward(self, tokens, targets):
        x = F.embedding(tokens, self.embedding) * self.embedding_multiplier
        for block in self.blocks:
            x = block(x, self.cos, self.sin, self.residual)
        logits = F.linear(self.final_norm(x) * self.logit_multiplier, self.embedding)
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.view(-1))


def optimizer(model, a):
    """AdamW with windtunnel's µP groups: hidden matrices at lr/m, embedding at lr, norms undecayed."""
    m = a.width / a.base_width
    hidden = [p for n, p in model.named_parameters() if p.dim() == 2 and n != "embedding"]
    norms = [p for p in model.parameters() if p.dim() == 1]
    groups = [
        {"params": hidden, "lr": a.lr / m, "weight_decay": 0.1},
        {"params": [model.embedding], "lr": a.lr, "weight_decay": 0.1},
        {"params": norms, "lr": a.lr, "weight_decay": 0.0},
    ]
    fused = {"fused": True} if a.device.startswith("cuda") else {"foreach": True}
    return torch.optim.AdamW(groups, betas=(0.9, 0.95), eps=1e-8, **fused)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("width", 128), ("depth", 4), ("heads", 4), ("kv-heads", 2), ("ffn-width", 320), ("vocab", 256)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--base-width", type=int, help="µP base width [default: --width]")
    p.add_argument("--scale-emb", type=float, default=12.0)
    p.add_argument("--scale-depth", type=float, default=1.4)
    p.add_argument("--init-std", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--steps", type=int, default=30, help="timed steps after the warm-up")
    p.add_argument("--warmup-steps", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch.set_num_threads [default: torch's]")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--precision", choices=["fp32", "tf32", "bf16-mixed"], default="fp32")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile-steps", type=int, default=0, help="after timing, profile this many steps: kernels and device time per step")
    p.add_argument(
        "--flush-denormal",
        action="store_true",
        help="torch.set_flush_denormal(True): denormal floats become zero, as windtunnel's CPU training does",
    )
    a = p.parse_args()
    a.base_width = a.base_width or a.width
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.flush_denormal and not torch.set_flush_denormal(True):
        raise SystemExit("--flush-denormal: this CPU has no flush-to-zero mode")
    torch.manual_seed(a.seed)
    cuda = a.device.startswith("cuda")
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"

    model = Transformer(a).to(a.device)
    opt = optimizer(model, a)
    step_fn = torch.compile(model) if a.compile else model
    tokens = torch.randint(0, a.vocab, (a.batch_size, a.seq_len + 1), device=a.device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    autocast = torch.autocast("cuda" if cuda else "cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16-mixed")

    def step():
        with autocast:
            loss = step_fn(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()  # synchronises with the device, as windtunnel's loss read-back does

    losses = [step()]
    first_step_s = time.perf_counter() - START
    for _ in range(max(a.warmup_steps - 1, 0)):
        losses.append(step())
    t0 = time.perf_counter()
    for _ in range(a.steps):
        losses.append(step())
    seconds = time.perf_counter() - t0
    profile = profile_steps(step, a.profile_steps, cuda) if a.profile_steps else None
    print(
        json.dumps(
            {
                "tokens_per_s": a.steps * a.batch_size * a.seq_len / seconds,
                "profile": profile,
                "step_ms": 1000 * seconds / a.steps,
                "first_step_s": first_step_s,
                "losses": losses[:5],
                "ln_vocab": math.log(a.vocab),
                "torch": torch.__version__,
                "device": torch.cuda.get_device_name(a.device) if cuda else "cpu",
                "threads": torch.get_num_threads(),
                "precision": a.precision,
                "compiled": a.compile,
                "flush_denormal": a.flush_denormal,
                "shape": {k: getattr(a, k) for k in ["width", "depth", "heads", "kv_heads", "ffn_width", "vocab", "batch_size", "seq_len"]},
            }
        )
    )


def profile_steps(step, steps, cuda):
    """Kernels launched and device time per training step, by torch.profiler (device kernels on
    a GPU, operators on the CPU), with the ten costliest by total time."""
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    kind = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    kernels = [e for e in prof.events() if e.device_type == kind]
    time_of = (lambda e: getattr(e, "device_time", getattr(e, "cuda_time", 0))) if cuda else (lambda e: e.cpu_time)  # noqa: E731
    totals = {}
    for e in kernels:
        count, us = totals.get(e.name, (0, 0.0))
        totals[e.name] = (count + 1, us + time_of(e))
    top = sorted(totals.items(), key=lambda kv: -kv[1][1])[:10]
    return {
        "steps": steps,
        "kernels_per_step": len(kernels) / steps,
        "device_ms_per_step": sum(time_of(e) for e in kernels) / 1000 / steps,
        "top": [{"name": n[:120], "count_per_step": c / steps, "ms_per_step": us / 1000 / steps} for n, (c, us) in top],
    }


if __name__ == "__main__":
    main()
