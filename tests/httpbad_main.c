/* httpbad_main.c: the misbehaving server as a program, for the akget tests:
 * prints its port on stdout and serves until a SIGTERM or --max-seconds
 * (default 600) pass. */
#include "httpbad.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_term;
static void on_term(int sig)
{
  (void)sig;
  got_term = 1;
}

int main(int argc, char **argv)
{
  int max_s = 600;
  if (argc == 3 && strcmp(argv[1], "--max-seconds") == 0)
    max_s = atoi(argv[2]);
  signal(SIGTERM, on_term);
  signal(SIGPIPE, SIG_IGN);
  uint16_t port;
  if (t_httpbad_start(&port) < 0) {
    perror("httpbad");
    return 1;
  }
  printf("%u\n", port);
  fflush(stdout);
  time_t end = time(NULL) + max_s;
  while (!got_term && time(NULL) < end)
    poll(NULL, 0, 200);
  t_httpbad_stop();
  return 0;
}
