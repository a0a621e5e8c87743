#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py CERTDIR OUTDIR: makes the seed corpus of
fuzz_tls_client (committed in corpus/; rerun only to refresh it): a real
TLS 1.2 server flight from openssl s_server (ECDSA certificate from
tests/tls_certs.sh) answering an openssl ClientHello for our first suite,
plus small hand-made answers (an alert, a truncated record, plain text)."""
import os, socket, subprocess, sys, time

certdir, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

# 1. An openssl ClientHello offering ECDHE-ECDSA-AES128-GCM-SHA256.
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(1); lst.settimeout(10)
cli = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % lst.getsockname()[1],
                        "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-servername",
                        "localhost"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
conn, _ = lst.accept(); conn.settimeout(5)
hello = conn.recv(65536); conn.close(); lst.close(); cli.kill(); cli.wait()

# 2. s_server's answer to it.
port = free_port()
srv = subprocess.Popen(["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-tls1_2",
                        "-cert", os.path.join(certdir, "server.pem"),
                        "-key", os.path.join(certdir, "server.key"), "-naccept", "1"],
                       stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # stdin open: EOF would end it
for _ in range(100):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=5); break
    except OSError:
        time.sleep(0.05)
c.sendall(hello)
flight = b""
c.settimeout(1)
try:
    while True:
        b = c.recv(65536)
        if not b:
            break
        flight += b
except (socket.timeout, ConnectionResetError):
    pass
c.close(); srv.kill(); srv.wait()

seeds = {
    "server_flight": flight,
    "server_hello_only": flight[:5 + int.from_bytes(flight[3:5], "big")],
    "alert_handshake_failure": bytes([0x15, 3, 3, 0, 2, 2, 40]),
    "record_header_truncated": bytes([0x16, 3, 3, 0x40]),
    "oversized_record": bytes([0x16, 3, 3, 0xff, 0xff]) + bytes(64),
    "http_answer": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print("flight bytes:", len(flight))
