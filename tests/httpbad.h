/* httpbad.h: the project's misbehaving HTTP server (httpbad.c), run inside a
 * test (t_httpbad_start) or as the program httpbad for the akget tests.
 *
 * Paths (N a byte count):
 *   /file/N  /norange/N  /chunked/N  /close/N      well-behaved bodies
 *   /reset/N     half the body, then RST          /short/N  half, then FIN
 *   /chunkcut/N  chunked, cut at half             /stall/N  half, then 30 s
 *   /trickle     a head byte every 100 ms, never ends
 *   /drip/N/P/US N bytes (Content-Length) sent P at a time, US microseconds
 *                apart, TCP_NODELAY: each piece its own segment
 *   /stallsome/N/K  the head, 50 ms later K body bytes of N, then 30 s
 *   /badstatus /bigheader (100 KiB) /dupcl /conflictcl /negcl
 *   /hugecl (10^18) /hugechunk (overflowing size)
 *   /notmod/N    a 304 (ETag "v1", Content-Length: N, no body), kept alive
 *   /interim/N   100 and 103 before a 200
 *   /interimcl/N a 100 with a Content-Length (and no body) before a 200
 *   /retry/KEY/N 503 + Retry-After: 1 the first time per KEY, then 200
 *   /busy        503 + Retry-After: 1, every time
 *   /z/KIND/N    the body of N bytes compressed: KIND gzip, deflate (zlib),
 *                gzipbomb (N zeros), br (gzip bytes labelled br), and broken
 *                gzip: gzipbad (corrupt data), gzipisize (wrong length
 *                trailer), gziptrunc (half the stream, framed as whole),
 *                gzipcl (Content-Length 100 over the stream, then close)
 *   /echo-ae     the request's Accept-Encoding as the body ("(none)")
 *   /tinychunks/N chunked in 7-byte chunks (thousands of spans a receive)
 *   /m/N         switched by /setmode/NAME (for resumes): ok, stall (half,
 *                then 30 s), norange (200 to a Range), badcr (a 206 one
 *                byte past the range asked)
 *   /redirect/rel /redirect/abs /redirect/loop    anything else: 404
 */
#ifndef T_HTTPBAD_H
#define T_HTTPBAD_H

#include <stdint.h>

/* The body byte at offset i of every well-behaved path. */
unsigned char t_body_byte(uint64_t i);

/* Where the file at fd first differs from that body, size bytes long: the
 * first byte that differs, or the end of the shorter when the sizes do; -1
 * when it is that body exactly (a read error: -2). For the tests that save
 * a body into a file. */
int64_t t_body_file_differs(int fd, int64_t size);

/* Starts the server on 127.0.0.1 (a port the kernel picks, stored in *port).
 * Returns 0 or -errno. One server per process. */
int t_httpbad_start(uint16_t *port);
/* Stops it; connection threads end within a few seconds. */
void t_httpbad_stop(void);

#endif
