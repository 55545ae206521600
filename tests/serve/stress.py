"""64 concurrent connections and a client killed mid-stream against a llama3-bench server (a
measurement, not a test): the server must keep answering, and its resident memory must come back
to its level after the load.

Usage: stress.py URL SERVER_PID [CONNECTIONS]
Prints one JSON line: RSS before / at the peak / after, every request's status, the killed
client's chunks, and the answer after the load.
"""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

url, pid = sys.argv[1], int(sys.argv[2])
connections = int(sys.argv[3]) if len(sys.argv) > 3 else 64
host = urllib.parse.urlparse(url)


def rss_mb():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024


def request(stream, max_tokens, question, temperature=0.7):
    conn = http.client.HTTPConnection(host.hostname, host.port, timeout=600)
    body = json.dumps({"messages": [{"role": "user", "content": question}], "stream": stream, "max_tokens": max_tokens, "temperature": temperature, "seed": 1})
    conn.request("POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def warm():
    # Every slot used once (caches and buffers at their working size): the level to come back to.
    ts = [threading.Thread(target=request, args=(False, 32, f"Hello {i}!")) for i in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


warm()
before = rss_mb()
peak = [before]
statuses = [None] * connections
stop = False


def sample():
    while not stop:
        peak.append(rss_mb())
        time.sleep(0.05)


def one(i):
    statuses[i] = request(i % 2 == 0, 32, f"Question {i}: name a color and a fruit.")[0]


# A client in its own process, killed (SIGKILL) after its third token chunk.
killed_client = subprocess.Popen([sys.executable, "-c", f"""
import http.client, json, sys
c = http.client.HTTPConnection({host.hostname!r}, {host.port}, timeout=600)
c.request("POST", "/v1/chat/completions", body=json.dumps({{"messages": [{{"role": "user", "content": "Tell me a very long story."}}], "stream": True, "max_tokens": 400, "ignore_eos": True}}), headers={{"Content-Type": "application/json"}})
r = c.getresponse()
n = 0
for line in r:
    if line.startswith(b"data: {{"):
        n += 1
        print(n, flush=True)
"""], stdout=subprocess.PIPE)
sampler = threading.Thread(target=sample)
sampler.start()
threads = [threading.Thread(target=one, args=(i,)) for i in range(connections)]
t0 = time.time()
for t in threads:
    t.start()
chunks = 0
while chunks < 3:
    chunks = int(killed_client.stdout.readline())
killed_client.send_signal(signal.SIGKILL)
killed_client.wait()
for t in threads:
    t.join()
load_s = time.time() - t0
stop = True
sampler.join()
time.sleep(1.0)
status, data = request(False, 16, "What is the capital of France?", temperature=0)
after = rss_mb()
print(json.dumps({
    "connections": connections,
    "statuses": {str(s): statuses.count(s) for s in set(statuses)},
    "load_s": round(load_s, 2),
    "killed_client_chunks_before_kill": chunks,
    "answer_after": {"status": status, "content": json.loads(data)["choices"][0]["message"]["content"]},
    "rss_mb": {"before": round(before, 1), "peak": round(max(peak), 1), "after": round(after, 1)},
}))
