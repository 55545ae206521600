#!/usr/bin/env python3
"""Independent reference for llama3-bench's parity tests: a LLaMA forward pass in NumPy (float64)
over a GGUF file whose tensors are dequantized by the `gguf` package (ggml's own Python tools).

It shares no code with the Rust implementations. RoPE pairs adjacent values, as ggml does for
GGUF llama files (the converter permutes the q/k rows accordingly).

usage: llama_numpy.py MODEL.gguf OUT.json IDS [IDS ...]
  each IDS is a comma-separated token-id list (one prompt); writes, for every prompt, the logits
  of every position: {"prompts": [{"ids": [...], "logits": [[...], ...]}]}
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def load(path):
    r = GGUFReader(path)
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer."):
            continue
        try:
            meta[k] = f.contents()
        except Exception:
            pass
    tensors = {}
    for t in r.tensors:
        w = dequantize(t.data, t.tensor_type).astype(np.float64)
        shape = tuple(int(d) for d in reversed(t.shape))  # ggml dims are innermost-first
        tensors[t.name] = w.reshape(shape)
    return meta, tensors


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, theta, freq_factors=None):
    # x: (t, heads, hd); rotate adjacent pairs (x[2i], x[2i+1]) by pos * theta^(-2i/hd)
    hd = x.shape[-1]
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    if freq_factors is not None:
        inv = inv / freq_factors
    ang = np.outer(pos, inv)[:, None, :]
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def forward(meta, W, ids):
    a = meta["general.architecture"]
    n_layers = int(meta[f"{a}.block_count"])
    heads = int(meta[f"{a}.attention.head_count"])
    kv_heads = int(meta.get(f"{a}.attention.head_count_kv", heads))
    eps = float(meta[f"{a}.attention.layer_norm_rms_epsilon"])
    theta = float(meta.get(f"{a}.rope.freq_base", 10000.0))
    ff = W.get("rope_freqs.weight")
    x = W["token_embd.weight"][ids]  # (t, dim)
    t, dim = x.shape
    hd = dim // heads
    rep = heads // kv_heads
    pos = np.arange(t)
    mask = np.triu(np.full((t, t), -np.inf), k=1)
    for i in range(n_layers):
        p = f"blk.{i}."
        h = rms_norm(x, W[p + "attn_norm.weight"], eps)
        q = (h @ W[p + "attn_q.weight"].T).reshape(t, heads, hd)
        k = (h @ W[p + "attn_k.weight"].T).reshape(t, kv_heads, hd)
        v = (h @ W[p + "attn_v.weight"].T).reshape(t, kv_heads, hd)
        q, k = rope(q, pos, theta, ff), rope(k, pos, theta, ff)
        k = np.repeat(k, rep, axis=1)
        v = np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(t, dim)
        x = x + o @ W[p + "attn_output.weight"].T
        h = rms_norm(x, W[p + "ffn_norm.weight"], eps)
        g = h @ W[p + "ffn_gate.weight"].T
        u = h @ W[p + "ffn_up.weight"].T
        x = x + ((g / (1.0 + np.exp(-g))) * u) @ W[p + "ffn_down.weight"].T
    x = rms_norm(x, W["output_norm.weight"], eps)
    out = W.get("output.weight", W["token_embd.weight"])
    return x @ out.T


def main():
    model, out_path, prompts = sys.argv[1], sys.argv[2], sys.argv[3:]
    meta, W = load(model)
    result = {"prompts": []}
    for p in prompts:
        ids = [int(s) for s in p.split(",")]
        logits = forward(meta, W, np.array(ids))
        result["prompts"].append({"ids": ids, "logits": logits.astype(np.float32).tolist()})
    with open(out_path + ".partial", "w") as f:
        json.dump(result, f)
    import os
    os.replace(out_path + ".partial", out_path)


if __name__ == "__main__":
    main()
