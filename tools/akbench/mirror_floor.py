#!/usr/bin/env python3
"""mirror_floor.py: the server's floor under akbench mirror's second run.

Sends one conditional HEAD (If-Modified-Since: the file's mtime) per file of
ROOT to a running nginx over CONNS kept-alive connections, DEPTH requests
written at once on each connection (1: one at a time; more: HTTP/1.1
pipelining), and reports the nginx worker's CPU time for the whole set
(/proc/PID/schedstat) and the wall time, timed inside this process: no
start or exit of a client is in it, so what is left is nginx's own work
and the loopback's. Every answer must be a 304 (else exit 1).

  . tests/nginx_env.sh; NGINX_HTTP_EXTRA='open_file_cache max=4096;' \\
      nginx_start STATE DOCROOT
  tools/akbench/mirror_floor.py --port $NGINX_PORT --nginx-pid $NGINX_PID \\
      --root DOCROOT/m --prefix /m --depth 1 4 16

docs/akget.md, MIRRORS, quotes its figures.
"""
import argparse
import email.utils
import os
import selectors
import socket
import statistics
import sys
import time


def worker_of(master):
    """nginx's one worker (worker_processes 1): the master's child."""
    with open('/proc/%d/task/%d/children' % (master, master)) as f:
        kids = f.read().split()
    if not kids:
        sys.exit('nginx %d has no worker' % master)
    return int(kids[0])


def cpu_ns(pid):
    with open('/proc/%d/schedstat' % pid) as f:
        return int(f.read().split()[0])


def requests(root, prefix, limit):
    names = sorted(os.listdir(root))[:limit]
    out = []
    for n in names:
        ims = email.utils.formatdate(os.stat(os.path.join(root, n)).st_mtime, usegmt=True)
        out.append(('HEAD %s/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nIf-Modified-Since: %s\r\n'
                    'Accept: */*\r\n\r\n' % (prefix, n, ims)).encode())
    return out


def one_set(port, reqs, conns, depth):
    """Every request once; returns wall seconds and the statuses seen."""
    socks = [socket.create_connection(('127.0.0.1', port)) for _ in range(conns)]
    sel = selectors.DefaultSelector()
    statuses = {}
    t0 = time.monotonic()
    for i, s in enumerate(socks):
        st = {'s': s, 'q': reqs[i::conns], 'at': 0, 'want': 0, 'buf': b''}
        sel.register(s, selectors.EVENT_READ, st)
        k = min(depth, len(st['q']))
        s.sendall(b''.join(st['q'][:k]))
        st['at'] = st['want'] = k
    left = conns
    while left:
        for key, _ in sel.select(timeout=10):
            st = key.data
            data = st['s'].recv(65536)
            if not data:
                sys.exit('nginx closed a connection with %d answers due' % st['want'])
            st['buf'] += data
            # A HEAD's answer is its head alone: it ends at the blank line.
            while b'\r\n\r\n' in st['buf']:
                head, st['buf'] = st['buf'].split(b'\r\n\r\n', 1)
                code = head.split(b' ', 2)[1].decode()
                statuses[code] = statuses.get(code, 0) + 1
                st['want'] -= 1
            if st['want'] == 0:
                k = min(depth, len(st['q']) - st['at'])
                if k == 0:
                    sel.unregister(st['s'])
                    left -= 1
                    continue
                st['s'].sendall(b''.join(st['q'][st['at']:st['at'] + k]))
                st['at'] += k
                st['want'] = k
    wall = time.monotonic() - t0
    for s in socks:
        s.close()
    return wall, statuses


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--port', type=int, required=True)
    ap.add_argument('--nginx-pid', type=int, required=True, help="nginx's master")
    ap.add_argument('--root', required=True, help='the folder of the files asked')
    ap.add_argument('--prefix', required=True, help="that folder's URL path")
    ap.add_argument('--files', type=int, default=1000)
    ap.add_argument('--conns', type=int, default=5)
    ap.add_argument('--depth', type=int, nargs='+', default=[1, 4, 16])
    ap.add_argument('--rounds', type=int, default=5)
    a = ap.parse_args()
    worker = worker_of(a.nginx_pid)
    reqs = requests(a.root, a.prefix, a.files)
    cpu = {d: [] for d in a.depth}
    wall = {d: [] for d in a.depth}
    for _ in range(a.rounds):
        for d in a.depth:  # alternated
            c0 = cpu_ns(worker)
            w, statuses = one_set(a.port, reqs, a.conns, d)
            cpu[d].append((cpu_ns(worker) - c0) / 1e6)
            wall[d].append(w * 1e3)
            if statuses != {'304': len(reqs)}:
                sys.exit('depth %d: answers %s, not %d x 304' % (d, statuses, len(reqs)))
    for d in a.depth:
        print('%d conditional HEADs, %d connections, depth %d: nginx %.1f ms CPU, '
              'wall %.1f ms (medians of %d)' % (len(reqs), a.conns, d, statistics.median(cpu[d]),
                                                statistics.median(wall[d]), a.rounds))


if __name__ == '__main__':
    main()
