#!/usr/bin/env python3
"""PyTorch reference for `deno task bench --compare-torch`: the bench's model and workloads.

The model is the kit's Llama-style LM as `src/model.ts` builds it, written in plain PyTorch:
token embedding, then per layer RMSNorm -> causal multi-head attention with rotary positions
(Hugging Face's rotate_half layout, theta 10000) -> residual, RMSNorm -> SwiGLU MLP -> residual;
final RMSNorm and an untied LM head. No biases, RMSNorm eps 1e-5, random normal(0, 0.02)
weights. LoRA (PEFT's form: A Kaiming-uniform, B zeros, scaling alpha / r, no dropout) on
q, k, v, o, gate, up and down; only the adapters train (AdamW, lr 1e-3, torch's defaults).

Each sequence is a prompt of seq // 2 random tokens and a response of the rest; a sequence's
log-prob is the sum of its response tokens' log-probs. Workloads, as the kit's bench:
  fwd_logp   no-grad forward + response log-probs of batch sequences.   tokens: batch * seq
  sft_step   mean response-token NLL, backward, AdamW step.              tokens: batch * seq
  sdpo_step  batch prompts x (1 chosen + K rejected) responses; the reference log-probs are the
             same model with adapters off (no grad, timed); S-DPO loss
             -logsigmoid(-logsumexp_k(beta * ((pi_k - ref_k) - (pi_c - ref_c)))), mean over
             prompts; backward; AdamW step.                  tokens: batch * (1 + K) * seq

Two ways to run it:
  one shot   prints one JSON line per workload (median of --iters after --warmup);
  --serve    reads "<workload> <iters>" lines on stdin and answers each with one JSON line of
             per-iteration seconds, so that a caller can interleave its own measurements with
             these ones (A B A B ...) on a shared machine.
Run with a Python that has torch (Debian: /usr/bin/python3 with python3-torch).
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn


class Norm(nn.Module):
    def __init__(self, dim, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class Lora(nn.Module):
    """y = x W^T + (alpha / r) * (x A^T) B^T with W frozen."""

    def __init__(self, n_in, n_out, rank, alpha):
        super().__init__()
        self.w = nn.Parameter(torch.randn(n_out, n_in) * 0.02, requires_grad=False)
        self.a = nn.Parameter(torch.empty(rank, n_in))
        nn.init.kaiming_uniform_(self.a, a=math.sqrt(5))
        self.b = nn.Parameter(torch.zeros(n_out, rank))
        self.scale = alpha / rank
        self.on = True

    def forward(self, x):
        y = x @ self.w.t()
        if self.on:
            y = y + (x @ self.a.t()) @ self.b.t() * self.scale
        return y


class Layer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f, r, al = c.dim, c.ffn, c.rank, c.alpha
        self.heads = c.heads
        self.n1, self.n2 = Norm(d), Norm(d)
        self.q, self.k, self.v, self.o = (Lora(d, d, r, al) for _ in range(4))
        self.gate, self.up, self.down = Lora(d, f, r, al), Lora(d, f, r, al), Lora(f, d, r, al)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        hd = d // self.heads
        h = self.n1(x)

        def heads(y):
            return y.view(b, t, self.heads, hd).transpose(1, 2)

        def rope(y):
            half = torch.cat((-y[..., hd // 2:], y[..., : hd // 2]), -1)
            return y * cos + half * sin

        q, k, v = rope(heads(self.q(h))), rope(heads(self.k(h))), heads(self.v(h))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1)
        x = x + self.o((att @ v).transpose(1, 2).reshape(b, t, d))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed = nn.Parameter(torch.randn(c.vocab, c.dim) * 0.02, requires_grad=False)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.norm = Norm(c.dim)
        self.head = nn.Parameter(torch.randn(c.vocab, c.dim) * 0.02, requires_grad=False)
        hd = c.dim // c.heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
        ang = torch.arange(c.seq, dtype=torch.float32)[:, None] * inv[None]
        ang = torch.cat((ang, ang), -1)
        self.cos, self.sin = ang.cos(), ang.sin()
        self.mask = torch.triu(torch.full((c.seq, c.seq), -1e9), 1)

    def logps(self, ids, prompt_len):
        x = self.embed[ids]
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        logits = self.norm(x) @ self.head.t()
        pred = logits[:, prompt_len - 1:-1]
        return torch.log_softmax(pred, -1).gather(-1, ids[:, prompt_len:, None])[..., 0].sum(-1)

    def adapters(self, on):
        for m in self.modules():
            if isinstance(m, Lora):
                m.on = on


def blas_libraries():
    try:
        with open("/proc/self/maps") as f:
            return sorted({ln.split()[-1] for ln in f if "blas" in ln.lower() and "/" in ln})
    except OSError:
        return []


def workloads(c):
    torch.manual_seed(c.seed)
    model = Model(c)
    params = [p for p in model.parameters() if p.requires_grad]
    start = [p.detach().clone() for p in params]
    p_len = c.seq // 2
    g = torch.Generator().manual_seed(c.seed + 1)
    ids = torch.randint(0, c.vocab, (c.batch, c.seq), generator=g)
    k = c.n_rejected
    prompt = torch.randint(0, c.vocab, (c.batch, 1, p_len), generator=g).expand(-1, 1 + k, -1)
    resp = torch.randint(0, c.vocab, (c.batch, 1 + k, c.seq - p_len), generator=g)
    pref = torch.cat((prompt, resp), -1).reshape(-1, c.seq)
    n_resp = c.batch * (c.seq - p_len)
    opts = {}

    def optimizer(name):
        if name not in opts:
            with torch.no_grad():
                for p, p0 in zip(params, start):
                    p.copy_(p0)
            opts[name] = torch.optim.AdamW(params, lr=1e-3)
        return opts[name]

    def fwd_logp():
        with torch.no_grad():
            return float(model.logps(ids, p_len).sum())

    def sft_step():
        opt = optimizer("sft")
        opt.zero_grad(set_to_none=True)
        loss = -model.logps(ids, p_len).sum() / n_resp
        loss.backward()
        opt.step()
        return float(loss)

    def sdpo_step():
        opt = optimizer("sdpo")
        opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            model.adapters(False)
            ref = model.logps(pref, p_len).view(c.batch, 1 + k)
            model.adapters(True)
        r = model.logps(pref, p_len).view(c.batch, 1 + k) - ref
        z = c.beta * (r[:, 1:] - r[:, :1])
        loss = -F.logsigmoid(-torch.logsumexp(z, -1)).mean()
        loss.backward()
        opt.step()
        return float(loss)

    return {
        "fwd_logp": (fwd_logp, c.batch * c.seq),
        "sft_step": (sft_step, c.batch * c.seq),
        "sdpo_step": (sdpo_step, c.batch * (1 + k) * c.seq),
    }


def timed(fn, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, default in [("vocab", 4096), ("dim", 256), ("layers", 4), ("heads", 4), ("ffn", 688),
                          ("seq", 128), ("batch", 8), ("rank", 8), ("n-rejected", 3), ("iters", 5),
                          ("warmup", 2), ("seed", 0)]:
        ap.add_argument(f"--{name}", type=int, default=default)
    ap.add_argument("--alpha", type=float, default=16.0)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--workloads", default="fwd_logp,sft_step,sdpo_step")
    ap.add_argument("--serve", action="store_true")
    c = ap.parse_args()
    if c.threads:
        torch.set_num_threads(c.threads)
    info = dict(torch=torch.__version__, threads=torch.get_num_threads(), blas=blas_libraries())
    work = workloads(c)
    if c.serve:
        print(json.dumps(dict(ready=True, **info)), flush=True)
        for line in sys.stdin:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "quit":
                break
            fn, tokens = work[parts[0]]
            times = timed(fn, int(parts[1]) if len(parts) > 1 else 1)
            print(json.dumps(dict(workload=parts[0], tokens_per_iter=tokens, sec_per_iter=times)),
                  flush=True)
        return
    for name in c.workloads.split(","):
        fn, tokens = work[name]
        timed(fn, c.warmup)
        times = timed(fn, c.iters)
        med = statistics.median(times)
        print(json.dumps(dict(workload=name, tokens_per_sec=tokens / med, sec_per_iter_median=med,
                              sec_per_iter=times, tokens_per_iter=tokens, **info)), flush=True)


if __name__ == "__main__":
    main()
