"""Loads a llama3-bench server's chat page in headless Chromium (the Debian package), asks a
question through the page (`/?ask=...`: the page's own streaming code sends it), waits for the
streamed answer, and saves a screenshot. Driven over the DevTools protocol, since `--screenshot`
alone shoots before a streamed answer arrives.

Usage: chromium_chat.py URL QUESTION PNG_PATH
Prints one JSON line: the answer text and the statistics line the page shows.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

import websocket

url, question, png = sys.argv[1], sys.argv[2], sys.argv[3]
browser = shutil.which("chromium") or shutil.which("chromium-browser")
if not browser:
    sys.exit("chromium is not installed: apt-get install -y chromium (.ci/run does it)")
profile = tempfile.mkdtemp(prefix="llama3-bench-chromium-")
proc = subprocess.Popen(
    [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
     "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", "--remote-debugging-port=0", "--window-size=900,700",
     "about:blank"],
    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
try:
    port = None
    deadline = time.time() + 60
    while port is None and time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if m:
            port = int(m.group(1))
    if port is None:
        sys.exit("chromium did not open its DevTools port")
    targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json"))
    page = next(t for t in targets if t["type"] == "page")
    ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60)
    ids = iter(range(1, 1 << 30))

    def call(method, **params):
        i = next(ids)
        ws.send(json.dumps({"id": i, "method": method, "params": params}))
        while True:
            msg = json.loads(ws.recv())
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(expr):
        return call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    target = url.rstrip("/") + "/?" + urllib.parse.urlencode({"ask": question, "temperature": 0, "max_tokens": 48})
    call("Page.enable")
    call("Page.navigate", url=target)
    deadline = time.time() + 300
    seen_partial = False
    while time.time() < deadline:
        text = js("(document.querySelector('.assistant span') || {}).textContent || ''")
        stats = js("(document.querySelector('.assistant .stats') || {}).textContent || ''")
        if text and "done" not in stats:
            seen_partial = True
        if "done" in stats or js("!!document.querySelector('.assistant .error')"):
            break
        time.sleep(0.02)
    # Read again once the page says done: `text` above may predate the last piece, which the page
    # appends just before it writes "done".
    text = js("(document.querySelector('.assistant span') || {}).textContent || ''")
    error = js("(document.querySelector('.assistant .error') || {}).textContent || ''")
    shot = call("Page.captureScreenshot", format="png")
    with open(png, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(json.dumps({"answer": text, "stats": stats, "error": error, "seen_while_streaming": seen_partial, "screenshot": png}))
    ws.close()
finally:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(profile, ignore_errors=True)
