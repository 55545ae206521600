#!/usr/bin/env python3
"""llama.cpp on the same GGUF, prompt tokens and generated-token count as `native-only --benchmark`,
for comparing against a mature engine. Run by hand (llama-cpp-python builds llama.cpp from
source, ~25 minutes on 2 cores): never part of CI.

usage: llamacpp_bench.py MODEL.gguf TEXT_FILE [--threads 2] [--gen 128] [--iterations 5]
  TEXT_FILE: the benchmark prompt text (bench-cli's BENCH_PROMPT); llama.cpp tokenizes it without
  BOS, as bench-core does for SmolLM2 (both tokenizers reproduce llama.cpp's reference cases).
"""
import argparse
import json
import statistics
import time

from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("text", help="file with the prompt text")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--gen", type=int, default=128)
ap.add_argument("--iterations", type=int, default=5)
a = ap.parse_args()

llm = Llama(model_path=a.model, n_ctx=1024, n_threads=a.threads, n_threads_batch=a.threads, n_batch=512, verbose=False)
ids = llm.tokenize(open(a.text).read().encode(), add_bos=False, special=False)
prefill, decode = [], []
for it in range(a.iterations + 1):
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(ids)
    t1 = time.perf_counter()
    tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t2 = time.perf_counter()
    for _ in range(a.gen - 1):
        llm.eval([tok])
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t3 = time.perf_counter()
    if it == 0:
        continue  # warm-up
    prefill.append(len(ids) / (t1 - t0))
    decode.append((a.gen - 1) / (t3 - t2))
print(json.dumps({
    "engine": "llama.cpp (llama-cpp-python 0.3.36)",
    "threads": a.threads,
    "prompt_tokens": len(ids),
    "generated_tokens": a.gen,
    "prefill_tokens_per_s": statistics.mean(prefill),
    "decode_tokens_per_s": statistics.mean(decode),
    "decode_tokens_per_s_stdev": statistics.stdev(decode) if len(decode) > 1 else 0.0,
}, indent=2))
