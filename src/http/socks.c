/* socks.c: SOCKS5's side of the proxy handshake (proxy.c runs the ring
 * ops): the greeting with the methods offered (no authentication, and
 * username/password when the proxy URL has a user: RFC 1929), the
 * sub-negotiation, the CONNECT request with the origin as an address
 * (socks5://, resolved here) or as a name (socks5h://, resolved by the
 * proxy), and the reply, read to its last byte and no further: the next
 * byte on the socket is the origin's. */
#include "http/internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

enum { PH_METHOD, PH_AUTH, PH_REPLY };

static const char *reply_text(unsigned code)
{
  static const char *const texts[] = {
      "succeeded", "general SOCKS server failure", "connection not allowed by ruleset",
      "network unreachable", "host unreachable", "connection refused", "TTL expired",
      "command not supported", "address type not supported"};
  return code < sizeof texts / sizeof texts[0] ? texts[code] : "unknown reply code";
}

int ak__socks_begin(ak__handshake *h)
{
  unsigned char *o = h->out;
  o[0] = 5;
  if (h->proxy->user) {
    o[1] = 2;
    o[2] = 0x00; /* none */
    o[3] = 0x02; /* username/password */
    h->out_len = 4;
  } else {
    o[1] = 1;
    o[2] = 0x00;
    h->out_len = 3;
  }
  h->phase = PH_METHOD;
  h->want = 2;
  return AK__HS_SEND;
}

static int proto_error(ak__handshake *h, const char *what)
{
  snprintf(h->detail, sizeof h->detail, "SOCKS5 proxy %s: %s", h->proxy->display, what);
  return AK_EPROXYPROTO;
}

/* The CONNECT request: the origin as an IP address (a literal, or the
 * address resolved here for socks5://) or as a name (socks5h://). */
static int send_request(ak__handshake *h)
{
  unsigned char *o = h->out;
  size_t n = 0;
  o[n++] = 5;
  o[n++] = 1; /* CONNECT */
  o[n++] = 0;
  unsigned char ip[16];
  if (h->have_addr && h->addr.ss_family == AF_INET) {
    o[n++] = 1;
    memcpy(o + n, &((const struct sockaddr_in *)&h->addr)->sin_addr, 4);
    n += 4;
  } else if (h->have_addr && h->addr.ss_family == AF_INET6) {
    o[n++] = 4;
    memcpy(o + n, &((const struct sockaddr_in6 *)&h->addr)->sin6_addr, 16);
    n += 16;
  } else if (inet_pton(AF_INET, h->host, ip) == 1) {
    o[n++] = 1;
    memcpy(o + n, ip, 4);
    n += 4;
  } else if (inet_pton(AF_INET6, h->host, ip) == 1) {
    o[n++] = 4;
    memcpy(o + n, ip, 16);
    n += 16;
  } else {
    size_t len = strlen(h->host);
    if (len > 255)
      return proto_error(h, "host name longer than 255 bytes");
    o[n++] = 3;
    o[n++] = (unsigned char)len;
    memcpy(o + n, h->host, len);
    n += len;
  }
  o[n++] = (unsigned char)(h->port >> 8);
  o[n++] = (unsigned char)(h->port & 0xff);
  h->out_len = n;
  h->phase = PH_REPLY;
  h->want = 4; /* then as long as the address type says */
  return AK__HS_SEND;
}

static int send_auth(ak__handshake *h)
{
  const char *user = h->proxy->user, *pw = h->proxy->password ? h->proxy->password : "";
  size_t ul = strlen(user), pl = strlen(pw); /* <= 255 each: checked when parsed */
  unsigned char *o = h->out;
  o[0] = 1;
  o[1] = (unsigned char)ul;
  memcpy(o + 2, user, ul);
  o[2 + ul] = (unsigned char)pl;
  memcpy(o + 3 + ul, pw, pl);
  h->out_len = 3 + ul + pl;
  h->phase = PH_AUTH;
  h->want = 2;
  return AK__HS_SEND;
}

static int on_reply(ak__handshake *h)
{
  const unsigned char *in = h->in;
  if (in[0] != 5)
    return proto_error(h, "not a SOCKS5 reply");
  if (in[1] != 0) {
    snprintf(h->detail, sizeof h->detail, "SOCKS5 proxy %s refused %s:%u: %s (code %u)",
             h->proxy->display, h->host, h->port, reply_text(in[1]), in[1]);
    return AK_EPROXYREFUSED;
  }
  size_t total;
  switch (in[3]) {
  case 1: total = 4 + 4 + 2; break;
  case 4: total = 4 + 16 + 2; break;
  case 3:
    if (h->in_len < 5) {
      h->want = 5;
      return AK__HS_MORE;
    }
    total = 4 + 1 + in[4] + 2u;
    break;
  default: return proto_error(h, "unknown address type in its reply");
  }
  if (h->in_len < total) {
    h->want = total;
    return AK__HS_MORE;
  }
  return AK__HS_DONE;
}

int ak__socks_step(ak__handshake *h)
{
  if (h->in_len < h->want)
    return AK__HS_MORE;
  const unsigned char *in = h->in;
  switch (h->phase) {
  case PH_METHOD:
    if (in[0] != 5)
      return proto_error(h, "not a SOCKS5 server");
    if (in[1] == 0x00)
      return send_request(h);
    if (in[1] == 0x02 && h->proxy->user)
      return send_auth(h);
    snprintf(h->detail, sizeof h->detail, "SOCKS5 proxy %s: %s", h->proxy->display,
             h->proxy->user ? "accepts no authentication method offered"
                            : "wants a user name and password");
    return AK_EPROXYAUTH;
  case PH_AUTH:
    if (in[0] != 1)
      return proto_error(h, "malformed authentication reply");
    if (in[1] != 0) {
      snprintf(h->detail, sizeof h->detail, "SOCKS5 proxy %s rejected the user name and password",
               h->proxy->display);
      return AK_EPROXYAUTH;
    }
    return send_request(h);
  default:
    return on_reply(h);
  }
}
