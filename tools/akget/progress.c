/* progress.c: everything akget says on stderr. On a terminal a display
 * thread redraws, four times a second, a line per active download (up to
 * eight) and an aggregate line (files, bytes, speed, ETA), in place; event
 * lines (failures, retries) are printed above it. When stderr is not a
 * terminal there is no display, only event lines: "done", "FAILED",
 * "retry", and with -v "start" and the rest. -q keeps only failures. */
#include "akget.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_t display;
static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static bool stop_display;
static bool display_running;
static int drawn_lines; /* lines of the display on screen now (under out_lock) */

/* Erases the display (cursor to its first line). Under out_lock. */
static void erase_display(void)
{
  for (int i = 0; i < drawn_lines; i++)
    fputs("\033[F\033[K", stderr);
  drawn_lines = 0;
}

void akg_progress_event(akg_run *run, const akg_item *item, const char *fmt, ...)
{
  (void)item;
  const akg_opts *o = run->opts;
  bool failure = strncmp(fmt, "FAILED", 6) == 0;
  if (o->quiet && !failure)
    return; /* before the other prefixes are compared: two events an item */
  /* A start over (-c: the file changed, a record not usable) is said
   * without -v too: bytes on disk are being thrown away. */
  bool important = failure || strncmp(fmt, "retry", 5) == 0 || strncmp(fmt, "done", 4) == 0 ||
                   strncmp(fmt, "start over", 10) == 0 || strncmp(fmt, "warning", 7) == 0;
  if (!o->verbose && !important)
    return;
  if (o->progress_tty && !failure && !o->verbose && strncmp(fmt, "done", 4) == 0)
    return; /* the display shows it */
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&run->out_lock);
  if (o->progress_tty)
    erase_display();
  fprintf(stderr, "akget: %s\n", line);
  pthread_mutex_unlock(&run->out_lock);
}

static void human(char *out, size_t n, double bytes)
{
  const char *unit[] = {"B", "kB", "MB", "GB", "TB"};
  int u = 0;
  while (bytes >= 1000 && u < 4) {
    bytes /= 1000;
    u++;
  }
  snprintf(out, n, u ? "%.1f%s" : "%.0f%s", bytes, unit[u]);
}

static const char *base_name(const char *p)
{
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

void akg_progress_track(akg_run *run, akg_item *it)
{
  pthread_mutex_lock(&run->active_lock);
  it->act_prev = NULL;
  it->act_next = run->active;
  if (run->active)
    run->active->act_prev = it;
  run->active = it;
  pthread_mutex_unlock(&run->active_lock);
}

/* Its bytes move to the ended sums; an item never tracked (an -i entry in
 * error) has none. */
void akg_progress_untrack(akg_run *run, akg_item *it)
{
  pthread_mutex_lock(&run->active_lock);
  if (it->act_prev || run->active == it) {
    if (it->act_prev)
      it->act_prev->act_next = it->act_next;
    else
      run->active = it->act_next;
    if (it->act_next)
      it->act_next->act_prev = it->act_prev;
    int64_t g = akg_item_got(it), t = __atomic_load_n(&it->total, __ATOMIC_RELAXED);
    run->ended_got += g;
    if (t >= 0) {
      run->ended_known_total += t;
      run->ended_known_got += g;
    }
  }
  it->act_prev = it->act_next = NULL;
  pthread_mutex_unlock(&run->active_lock);
}

/* Bytes over all items, and over those whose size is known. Under
 * active_lock. */
static void totals(const akg_run *run, int64_t *got, int64_t *known_total, int64_t *known_got)
{
  *got = run->ended_got;
  *known_total = run->ended_known_total;
  *known_got = run->ended_known_got;
  for (const akg_item *it = run->active; it; it = it->act_next) {
    int64_t g = akg_item_got(it), t = __atomic_load_n(&it->total, __ATOMIC_RELAXED);
    *got += g;
    if (t >= 0) {
      *known_total += t;
      *known_got += g;
    }
  }
}

static void draw(akg_run *run, double *last_t, int64_t *last_got, double *speed)
{
  double now = ak_now_ns() / 1e9;
  int64_t got, ktotal, kgot;
  /* The active items are read under active_lock: an item is freed only
   * after it has left the list. */
  pthread_mutex_lock(&run->active_lock);
  totals(run, &got, &ktotal, &kgot);
  double dt = now - *last_t;
  if (dt > 0.05) {
    double inst = (got - *last_got) / dt;
    *speed = *speed == 0 ? inst : 0.7 * *speed + 0.3 * inst; /* smoothed */
    *last_t = now;
    *last_got = got;
  }
  char lines[10][200];
  int n = 0;
  for (const akg_item *it = run->active; it && n < 8; it = it->act_next) {
    if (__atomic_load_n(&it->state, __ATOMIC_ACQUIRE) != AKG_ACTIVE)
      continue;
    int64_t g = akg_item_got(it), t = __atomic_load_n(&it->total, __ATOMIC_RELAXED);
    char gs[32], ts[32];
    human(gs, sizeof gs, (double)g);
    if (t > 0) {
      human(ts, sizeof ts, (double)t);
      snprintf(lines[n++], sizeof lines[0], "  %-40.40s %3d%% %9s / %-9s", base_name(it->path),
               (int)(100 * g / t), gs, ts);
    } else {
      snprintf(lines[n++], sizeof lines[0], "  %-40.40s      %9s", base_name(it->path), gs);
    }
  }
  pthread_mutex_unlock(&run->active_lock);
  char gs[32], ss[32], eta[32] = "--:--";
  human(gs, sizeof gs, (double)got);
  human(ss, sizeof ss, *speed);
  if (*speed > 0 && ktotal > kgot) {
    int64_t secs = (int64_t)((ktotal - kgot) / *speed);
    snprintf(eta, sizeof eta, "%" PRId64 ":%02" PRId64, secs / 60, secs % 60);
  }
  size_t fin = atomic_load(&run->finished), failed = atomic_load(&run->failed);
  char fails[32] = "";
  if (failed)
    snprintf(fails, sizeof fails, ", %zu failed", failed);
  snprintf(lines[n++], sizeof lines[0], "[%zu/%zu files%s] %s  %s/s  ETA %s", fin,
           (size_t)atomic_load(&run->count), fails, gs, ss, eta);
  pthread_mutex_lock(&run->out_lock);
  erase_display();
  for (int i = 0; i < n; i++)
    fprintf(stderr, "%s\033[K\n", lines[i]);
  drawn_lines = n;
  fflush(stderr);
  pthread_mutex_unlock(&run->out_lock);
}

static void *display_main(void *arg)
{
  akg_run *run = arg;
  double last_t = ak_now_ns() / 1e9, speed = 0;
  int64_t last_got = 0;
  pthread_mutex_lock(&wake_lock);
  while (!stop_display) {
    pthread_mutex_unlock(&wake_lock);
    draw(run, &last_t, &last_got, &speed);
    pthread_mutex_lock(&wake_lock);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 250000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    if (!stop_display)
      pthread_cond_timedwait(&wake, &wake_lock, &ts);
  }
  pthread_mutex_unlock(&wake_lock);
  draw(run, &last_t, &last_got, &speed); /* the final state stays on screen */
  return NULL;
}

void akg_progress_start(akg_run *run)
{
  stop_display = false;
  display_running = pthread_create(&display, NULL, display_main, run) == 0; /* else: no display */
}

void akg_progress_stop(akg_run *run)
{
  (void)run;
  if (!display_running)
    return;
  pthread_mutex_lock(&wake_lock);
  stop_display = true;
  pthread_cond_signal(&wake);
  pthread_mutex_unlock(&wake_lock);
  pthread_join(display, NULL);
}

void akg_progress_summary(akg_run *run)
{
  if (run->opts->quiet)
    return;
  int64_t bytes = atomic_load(&run->bytes);
  size_t count = atomic_load(&run->count);
  size_t ok = atomic_load(&run->finished) - atomic_load(&run->failed);
  double s = (ak_now_ns() - run->start_ns) / 1e9;
  char bs[32], ss[32];
  human(bs, sizeof bs, (double)bytes);
  human(ss, sizeof ss, s > 0 ? bytes / s : 0);
  size_t unchanged = atomic_load(&run->unchanged);
  if (unchanged > 0) /* -N: a file kept as it was is not "downloaded" */
    fprintf(stderr, "akget: %zu of %zu downloaded, %zu unchanged, %zu failed; %s in %.2f s (%s/s)\n",
            ok - unchanged, count, unchanged, count - ok, bs, s, ss);
  else
    fprintf(stderr, "akget: %zu of %zu downloaded, %zu failed; %s in %.2f s (%s/s)\n", ok,
            count, count - ok, bs, s, ss);
}
