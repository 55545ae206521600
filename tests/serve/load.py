"""Concurrent streaming load against a llama3-bench server (a measurement, not a test).

Usage: load.py URL CONCURRENCY TOKENS
Runs each of CONCURRENCY different greedy requests alone first (their reference tokens), then
all of them at once; every request asks for TOKENS tokens with ignore_eos. Prints one JSON line:
aggregate generated tokens/s of the concurrent run (all tokens / wall time from the first send
to the last token), per-request tokens/s, time to first token, and how many leading tokens of
each request equal its tokens alone.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

url, concurrency, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
host = urllib.parse.urlparse(url)
QUESTIONS = [
    "Explain how a bicycle stays upright.",
    "Write a short story about a lighthouse keeper.",
    "What are the main causes of the seasons on Earth?",
    "Describe the water cycle step by step.",
    "List five uses of copper and explain each.",
    "Why is the sky blue? Answer in detail.",
    "Summarize the history of the printing press.",
    "How do vaccines train the immune system?",
]


def stream(question):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=600)
    body = json.dumps({"messages": [{"role": "user", "content": question}], "stream": True, "max_tokens": tokens,
                       "ignore_eos": True, "temperature": 0})
    start = time.time()
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200, r.status
    ids, first, last = [], None, None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        data = line[6:]
        if data == b"[DONE]":
            break
        j = json.loads(data)
        for c in j["choices"]:
            if "token_ids" in c:
                now = time.time()
                first = first or now
                last = now
                ids.extend(c["token_ids"])
    conn.close()
    return {"ids": ids, "start": start, "first": first, "end": last}


questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(concurrency)]
alone = [stream(q) for q in questions]
results = [None] * concurrency


def run(i):
    results[i] = stream(questions[i])


threads = [threading.Thread(target=run, args=(i,)) for i in range(concurrency)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
t1 = max(r["end"] for r in results)
total = sum(len(r["ids"]) for r in results)
same = [next((k for k, (a, b) in enumerate(zip(r["ids"], a["ids"])) if a != b), min(len(r["ids"]), len(a["ids"]))) for r, a in zip(results, alone)]
alone_rate = sum(len(a["ids"]) - 1 for a in alone) / sum(a["end"] - a["first"] for a in alone)
print(json.dumps({
    "concurrency": concurrency,
    "tokens_per_request": tokens,
    "generated_tokens": total,
    "wall_s": round(t1 - t0, 3),
    "aggregate_tok_s": round(total / (t1 - t0), 2),
    "single_request_decode_tok_s": round(alone_rate, 2),
    "per_request_tok_s": [round((len(r["ids"]) - 1) / (r["end"] - r["first"]), 2) for r in results],
    "ttft_s": [round(r["first"] - r["start"], 3) for r in results],
    "leading_tokens_equal_alone": same,
}))
