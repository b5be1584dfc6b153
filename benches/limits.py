#!/usr/bin/env python3
"""What the request limits let through, measured on the release binary.

    cargo build --release && python3 benches/limits.py

Starts `target/release/omnibox serve` on a fresh SQLite file with a tiny
Graph API stand-in (so a Facebook page can be connected), fills the inbox
with signed webhooks (100 customers x 50 messages), then reports:

1. the largest inbox query the cost limit admits (page sizes raised until
   QUERY_TOO_COSTLY), its time, and the server's peak resident memory;
2. the server's resident memory with 2,000 WebSockets that never send
   `connection_init`, before and after the init timeout closes them.

Standard library only; the server's memory is read from /proc.
"""

import hashlib
import hmac
import http.server
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "omnibox")
APP_SECRET = "limits-app-secret"
PAGE = "104729381650237"
CUSTOMERS, MESSAGES = 100, 50
SOCKETS = 2000


class Graph(http.server.BaseHTTPRequestHandler):
    """Answers the two Graph API calls `connectChannel` makes."""

    def do_GET(self):
        self.answer({"id": PAGE, "name": "Limits Page"})

    def do_POST(self):
        self.answer({"success": True})

    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def memory(pid):
    status = open(f"/proc/{pid}/status").read()
    field = lambda name: int(re.search(rf"{name}:\s+(\d+) kB", status).group(1)) / 1024
    return field("VmRSS"), field("VmHWM")


def graphql(url, token, query, variables=None):
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())


def webhook(url, body):
    signature = "sha256=" + hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"{url}/webhooks/facebook",
        data=body,
        headers={"content-type": "application/json", "x-hub-signature-256": signature},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200


def main():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    graph = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Graph)
    threading.Thread(target=graph.serve_forever, daemon=True).start()
    data = tempfile.mkdtemp(prefix="omnibox-limits-")
    env = dict(
        os.environ,
        OMNIBOX_DATABASE_URL=f"sqlite://{data}/omnibox.db",
        OMNIBOX_LISTEN="127.0.0.1:0",
        OMNIBOX_SECRET_KEY="dGVzdC1rZXktMzItYnl0ZXMtbG9uZy0tLS0tLS0tLS0=",
        OMNIBOX_FACEBOOK_APP_SECRET=APP_SECRET,
        OMNIBOX_FACEBOOK_GRAPH_URL=f"http://127.0.0.1:{graph.server_port}",
        OMNIBOX_LOG="warn,omnibox=info",
    )
    server = subprocess.Popen([BINARY, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    address = None
    for line in server.stderr:
        found = re.search(r"address=(\S+)", line)
        if "listening" in line and found:
            address = found.group(1)
            break
    threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
    url = f"http://{address}"
    owner = json.loads(
        subprocess.run(
            [BINARY, "bootstrap", "--org", "Limits", "--owner", "owner@example.com"],
            env=env, capture_output=True, text=True, check=True,
        ).stdout
    )
    token = owner["token"]
    connected = graphql(url, token, 'mutation { connectChannel(input: {kind: FACEBOOK, externalId: "%s", name: "P", accessToken: "t"}) { id } }' % PAGE)
    assert "errors" not in connected, connected
    now = int(time.time() * 1000)
    for c in range(CUSTOMERS):
        for m in range(MESSAGES):
            at = now - (CUSTOMERS * MESSAGES - c * MESSAGES - m) * 1000
            body = json.dumps({"object": "page", "entry": [{"id": PAGE, "time": at, "messaging": [{
                "sender": {"id": f"77{c:08d}"}, "recipient": {"id": PAGE}, "timestamp": at,
                "message": {"mid": f"m_limits_{c}_{m}", "text": f"message {m} from customer {c}, with a few words of text"}}]}]}).encode()
            webhook(url, body)
    while True:
        count = graphql(url, token, "{ conversations(first: 200) { nodes { id } } }")
        if len(count["data"]["conversations"]["nodes"]) >= CUSTOMERS:
            break
        time.sleep(0.2)
    rss, _ = memory(server.pid)
    print(f"date: {time.strftime('%Y-%m-%d')}; inbox: {CUSTOMERS} conversations x {MESSAGES} messages; server RSS {rss:.1f} MiB")

    query = "query($c: Int!, $m: Int!) { conversations(first: $c) { nodes { id contact { displayName } messages(first: $m) { nodes { id text sentAt } } } } }"
    best = None
    for conversations in (100, 80, 60, 50, 40):
        for messages in (100, 80, 60, 50, 40, 30, 25, 20):
            answer = graphql(url, token, query, {"c": conversations, "m": messages})
            codes = [e.get("extensions", {}).get("code") for e in answer.get("errors", [])]
            if "QUERY_TOO_COSTLY" in codes:
                continue
            assert not codes, answer
            rows = sum(len(c["messages"]["nodes"]) for c in answer["data"]["conversations"]["nodes"])
            if best is None or rows > best[2]:
                best = (conversations, messages, rows)
            break
    conversations, messages, rows = best
    started = time.perf_counter()
    for _ in range(10):
        graphql(url, token, query, {"c": conversations, "m": messages})
    elapsed = (time.perf_counter() - started) / 10
    rss, peak = memory(server.pid)
    print(f"largest admitted: conversations(first: {conversations}) x messages(first: {messages}) = {rows} messages; "
          f"{elapsed * 1000:.1f} ms each (mean of 10); server RSS {rss:.1f} MiB, peak {peak:.1f} MiB")
    refused = graphql(url, token, query, {"c": 200, "m": 200})
    print(f"conversations(first: 200) x messages(first: 200): {refused['errors'][0]['extensions']['code']}")

    before, _ = memory(server.pid)
    sockets = []
    host, port = address.rsplit(":", 1)
    for n in range(SOCKETS):
        s = socket.create_connection((host, int(port)))
        s.sendall((f"GET /graphql HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n").encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 101"), n
        sockets.append(s)
    opened, _ = memory(server.pid)
    deadline = time.time() + 60
    closed = 0
    for s in sockets:
        s.settimeout(max(0.1, deadline - time.time()))
        try:
            while s.recv(4096):
                pass
            closed += 1
        except OSError:
            pass
    time.sleep(1)
    after, peak = memory(server.pid)
    print(f"{SOCKETS} WebSockets without connection_init: server RSS {before:.1f} MiB before, "
          f"{opened:.1f} MiB with them open, {after:.1f} MiB after the init timeout closed {closed} of them (peak {peak:.1f} MiB)")
    server.terminate()
    server.wait(timeout=60)


if __name__ == "__main__":
    sys.exit(main())
