"""Checks one llama3-bench server (`--serve`) with the official `openai` Python client and with
raw HTTP: chat and text completions, streaming and not; temperature-0 streamed tokens against the
command line's greedy tokens; OpenAI-style errors with their status and body; a client that
leaves mid-stream frees its slot; the queue limit answers 429 with Retry-After.

Usage: openai_client.py URL MODEL QUESTION EXPECTED_IDS_JSON CONTEXT BODY_LIMIT PARALLEL MAX_QUEUE
Prints one JSON summary line; exits non-zero (with the failed check) on any failure.
"""

import http.client
import json
import sys
import threading
import time
import urllib.parse

import openai

url, model, question, expected_json, context, body_limit, parallel, max_queue = sys.argv[1:9]
expected = json.loads(expected_json)
context, body_limit, parallel, max_queue = int(context), int(body_limit), int(parallel), int(max_queue)
host = urllib.parse.urlparse(url)
client = openai.OpenAI(base_url=url.rstrip("/") + "/v1", api_key="unused", max_retries=0, timeout=120)
summary = {}


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def raw(method, path, body=None, headers=None):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    conn.request(method, path, body=body, headers=headers or {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def metric(name):
    _, _, text = raw("GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    check(False, f"/metrics has no {name}")


# Health, models, metrics.
status, _, body = raw("GET", "/health")
check(status == 200 and json.loads(body)["status"] == "ok", f"/health: {status} {body!r}")
models = client.models.list()
check([m.id for m in models.data] == [model], f"/v1/models lists {[m.id for m in models.data]}")

messages = [{"role": "user", "content": question}]
n = len(expected)

# Chat, not streamed, greedy.
r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=n)
chat_text = r.choices[0].message.content
check(r.choices[0].message.role == "assistant", "chat role")
check(r.usage.completion_tokens == n or r.choices[0].finish_reason == "stop", f"chat usage {r.usage}")
check(r.object == "chat.completion" and r.id and r.created > 0, "chat response fields")
summary["chat"] = {"text": chat_text, "finish_reason": r.choices[0].finish_reason, "usage": r.usage.model_dump()}

# Chat, streamed, greedy: one token per chunk, the role with the first token, usage at the end.
stream = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=n, stream=True, stream_options={"include_usage": True})
ids, pieces, roles, usage, finish = [], [], [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    if not chunk.choices:
        continue
    c = chunk.choices[0]
    extra = c.model_extra or {}
    if "token_ids" in extra:
        check(len(extra["token_ids"]) == 1, f"a chunk carries {extra['token_ids']}: one token per chunk")
        ids.extend(extra["token_ids"])
        check(c.delta.content is not None, "a token chunk has content")
    if c.delta.role:
        roles.append((len(ids), c.delta.content))
    if c.delta.content:
        pieces.append(c.delta.content)
    if c.finish_reason:
        finish = c.finish_reason
check(roles[:1] == [(1, roles[0][1])] and len(roles) == 1, f"the role comes once, with the first token: {roles}")
check(ids == expected, f"streamed greedy tokens {ids} != the command line's {expected}")
check("".join(pieces) == chat_text, f"streamed text {''.join(pieces)!r} != non-streamed {chat_text!r}")
check(usage is not None and usage.completion_tokens == len(ids), f"usage chunk {usage}")
summary["chat_stream"] = {"tokens": len(ids), "equal_to_cli": ids == expected, "finish_reason": finish, "usage": usage.model_dump()}

# Text completions, not streamed and streamed.
prompt = "The capital of France is"
r = client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=8)
comp_text = r.choices[0].text
check(r.object == "text_completion" and r.usage.completion_tokens >= 1, f"completion {r}")
streamed = []
for chunk in client.completions.create(model=model, prompt=prompt, temperature=0, max_tokens=8, stream=True):
    if chunk.choices:
        streamed.append(chunk.choices[0].text)
check("".join(streamed) == comp_text, f"streamed completion {''.join(streamed)!r} != {comp_text!r}")
summary["completion"] = {"prompt": prompt, "text": comp_text}

# Sampling with a seed is reproducible.
a = client.chat.completions.create(model=model, messages=messages, temperature=0.9, top_p=0.95, seed=7, max_tokens=12).choices[0].message.content
b = client.chat.completions.create(model=model, messages=messages, temperature=0.9, top_p=0.95, seed=7, max_tokens=12).choices[0].message.content
check(a == b, f"seeded answers differ: {a!r} vs {b!r}")

# Errors: status and body.
errors = {}


def error_case(name, status_want, method, path, body, headers=None, body_check=None):
    status, hdrs, data = raw(method, path, body, headers)
    check(status == status_want, f"{name}: status {status} (wanted {status_want}), body {data[:300]!r}")
    j = json.loads(data)
    check("error" in j and j["error"]["message"], f"{name}: not an OpenAI error body: {data[:300]!r}")
    if body_check:
        check(body_check(j, hdrs), f"{name}: body {j}")
    errors[name] = {"status": status, "body": j}


chat = "/v1/chat/completions"
error_case("malformed_json", 400, "POST", chat, b'{"messages": [')
error_case("wrong_type", 400, "POST", chat, json.dumps({"messages": messages, "temperature": "hot"}).encode())
error_case("missing_messages", 400, "POST", chat, json.dumps({"model": model}).encode())
long_prompt = "hello " * (context + 10)
error_case("prompt_too_long", 400, "POST", "/v1/completions", json.dumps({"prompt": long_prompt}).encode(),
           body_check=lambda j, h: str(context) in j["error"]["message"] and j["error"]["code"] == "context_length_exceeded")
error_case("unknown_model", 404, "POST", chat, json.dumps({"model": "gpt-5", "messages": messages}).encode())
error_case("body_too_large", 413, "POST", chat, json.dumps({"messages": [{"role": "user", "content": "x" * (body_limit + 1)}]}).encode())
try:
    client.chat.completions.create(model="no-such-model", messages=messages)
    check(False, "the client accepted an unknown model")
except openai.NotFoundError as e:
    check(e.status_code == 404, "NotFoundError status")

# A client that leaves mid-stream frees its slot.
def open_stream(max_tokens):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    body = json.dumps({"model": model, "messages": messages, "stream": True, "max_tokens": max_tokens, "ignore_eos": True, "temperature": 0})
    conn.request("POST", chat, body=body, headers={"Content-Type": "application/json"})
    return conn, conn.getresponse()


def wait_metric(name, want, seconds=30):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if metric(name) == want:
            return True
        time.sleep(0.05)
    return False


conn, resp = open_stream(context - 64)
check(resp.status == 200, f"stream status {resp.status}")
got = 0
while got < 3:
    line = resp.fp.readline()
    if line.startswith(b"data: {"):
        got += 1
check(metric("llama3_bench_running_sequences") == 1, "one running sequence while streaming")
conn.sock.close()
conn.close()
check(wait_metric("llama3_bench_running_sequences", 0), "the slot of a client that left was not freed")
r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=4)
check(r.usage.completion_tokens >= 1, "answering after a client left")
summary["disconnect"] = "slot freed at the next step; the next request was answered"

# Queue full: every slot busy and max_queue waiting, one more gets 429 with Retry-After.
held = [open_stream(context - 64) for _ in range(parallel)]
check(wait_metric("llama3_bench_running_sequences", parallel), "slots not all busy")
waiting = []
for _ in range(max_queue):
    c = http.client.HTTPConnection(host.hostname, host.port, timeout=120)
    c.request("POST", chat, body=json.dumps({"messages": messages, "max_tokens": 4}), headers={"Content-Type": "application/json"})
    waiting.append(c)
check(wait_metric("llama3_bench_queue_length", max_queue), "queue did not fill")
error_case("queue_full", 429, "POST", chat, json.dumps({"messages": messages, "max_tokens": 4}).encode(),
           body_check=lambda j, h: h.get("retry-after") == "1" or h.get("Retry-After") == "1")
for c, _ in held:
    c.sock.close()
    c.close()
for c in waiting:
    r = c.getresponse()
    check(r.status == 200, f"a queued request got {r.status}")
    r.read()
    c.close()
check(wait_metric("llama3_bench_running_sequences", 0) and wait_metric("llama3_bench_queue_length", 0), "slots and queue drained")
summary["errors"] = errors

_, _, text = raw("GET", "/metrics")
for name in ["llama3_bench_requests_total", "llama3_bench_prompt_tokens_total", "llama3_bench_generated_tokens_total",
             "llama3_bench_time_to_first_token_seconds_bucket", "llama3_bench_inter_token_latency_seconds_count", "llama3_bench_queue_length"]:
    check(name in text.decode(), f"/metrics lacks {name}")
summary["metrics_ttft_count"] = metric("llama3_bench_time_to_first_token_seconds_count")
print(json.dumps(summary))
