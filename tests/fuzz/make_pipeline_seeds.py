#!/usr/bin/env python3
"""tests/fuzz/make_pipeline_seeds.py OUTDIR: makes the seed corpus of
fuzz_http_pipeline (committed in corpus_http_pipeline/; rerun only to
refresh it): scripts in that target's input format (see its top comment)
for the cases its tests name: all answered in order, a close after k
answers, a body after HEAD at once and late (also one that began like a
status line), a server that never answers,
a reset, a response cut in its head, a redirect, an interim response."""
import os, struct, sys

out = sys.argv[1]
os.makedirs(out, exist_ok=True)

def resp(status_idx, hdr=0, cl=0):
    return bytes([0, status_idx, hdr]) + struct.pack(">I", cl)

def junk(data):
    return bytes([2, len(data)]) + data

PAUSE = bytes([3])

def conn(items, reset=False, chunk=255, cut=0xffff):
    return bytes([1 if reset else 0, chunk - 1]) + struct.pack(">H", cut) + bytes([len(items)]) + b"".join(items)

def seed(n, flags, *conns):
    return bytes([n - 1, flags]) + b"".join(conns)

S200, S304, S204, S404, S301, S100 = 0, 1, 2, 3, 5, 8
seeds = {
    "all_304": seed(6, 0, conn([resp(S304)] * 6)),
    "mixed_cl": seed(4, 0, conn([resp(S200, 1, 5), resp(S304), resp(S200, 1, 1 << 31), resp(S404)])),
    "close_after_2": seed(5, 0, conn([resp(S304)] * 2), conn([resp(S304)] * 3)),
    "body_after_head": seed(3, 0, conn([resp(S200, 1, 5), junk(b"hello"), resp(S304), resp(S304)]), conn([resp(S304)] * 2)),
    "late_body": seed(3, 0, conn([resp(S200, 1, 5), PAUSE, junk(b"hello"), resp(S304), resp(S304)]), conn([resp(S304)] * 3)),
    # A late body whose first bytes came with the head and are a prefix of
    # "HTTP/" (the carry): the rest shows it is not the next answer.
    "late_body_after_prefix": seed(3, 0, conn([resp(S200, 1, 6), junk(b"HTTP"), PAUSE, junk(b"S!"), resp(S304), resp(S304)]), conn([resp(S304)] * 3)),
    "prefix_then_close": seed(3, 0, conn([resp(S200, 1, 6), junk(b"HT")]), conn([resp(S304)] * 2)),
    "never_answers": seed(4, 0, conn([]), conn([]), conn([]), conn([])),
    "reset_midway": seed(4, 0, conn([resp(S304), resp(S304)], reset=True), conn([resp(S304)] * 2)),
    "cut_in_head": seed(3, 0, conn([resp(S304)] * 3, chunk=7, cut=60), conn([resp(S304)] * 3)),
    "redirect": seed(3, 0, conn([resp(S304), resp(S301, 8), resp(S304)]), conn([resp(S200)])),
    "interim": seed(2, 0, conn([resp(S100), resp(S200), resp(S204)])),
    "connection_close": seed(4, 1, conn([resp(S404, 4), resp(S304)]), conn([resp(S304)] * 3)),
    "too_many": seed(2, 0, conn([resp(S304)] * 4)),
}
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
