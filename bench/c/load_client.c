// The load client for every benchmark server: one thread, epoll, N
// connections. Written in C so that it is never what limits a Deno server;
// the runner checks that with its CPU time and the C echo server's score.
//
//   load_client --port P [--host 127.0.0.1] [--mode pingpong|idle|burst]
//     [--conns 50] [--size 64] [--depth 1] [--warmup 1] [--duration 3]
//     [--server-pid PID] [--min-replied 1.0]
//   load_client --ports P1,P2,... [--server-pids PID1,PID2,...]
//     [--slice 0.25] [--settle 0.05] [pingpong options as above]
//
// pingpong: each connection keeps `depth` messages of `size` bytes in
//   flight and sends the next as soon as one is echoed back in full. After
//   the warm-up (and once `min-replied` of the connections had a reply) it
//   measures for `duration` s and prints one JSON line: messages/s, MB/s,
//   p50/p99 round trip, Jain's fairness index over per-connection counts,
//   each connection's longest wait for a reply (median over connections
//   and worst; see `longest_wait` below), its own CPU time and the server's
//   (from /proc/PID/stat). p99 counts messages, so a connection left waiting
//   2 s adds one sample to it; the longest wait per connection shows it.
// --ports: pingpong against several servers in turns (see run_slices);
//   one JSON line per server, in the order given, each with its "port".
// idle: connects all, one echo each, prints "ready" and a JSON line, then
//   holds the connections until stdin closes (or `duration` s pass).
// burst: opens all connections at once, one echo each, closes; prints the
//   time from the first connect to the last echo.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPTH 64
#define FINE_US 100000 // 1 µs buckets up to 100 ms
#define COARSE_MS 100000 // then 1 ms buckets up to 100 s

typedef struct {
  int fd;
  int is_connected;
  int is_done;
  uint64_t count;        // messages echoed back in full
  uint64_t window_start; // count when the measured window began
  uint64_t received;     // bytes of the current message received so far
  size_t unsent;         // bytes of queued messages not yet written
  int in_flight;
  double sent_at[MAX_DEPTH]; // ring of send times, oldest first
  int head;
  double longest_wait; // s, longest wait for a reply (see `waited`)
  uint32_t watching;   // the epoll events registered for fd
  int port;            // the server it talks to
  int target;          // that server's index in --ports (0 with --port)
  uint64_t measured;   // messages echoed in measured windows (--ports)
} conn_t;

static const char *host = "127.0.0.1";
static int port, conns = 50, size = 64, depth = 1, server_pid = 0;
static double warmup = 1, duration = 3, min_replied = 1.0;
static const char *mode = "pingpong";
static conn_t *cs;
static int ep;
static char *out_buf, *in_buf;
static uint32_t *fine, *coarse; // the measured server's round-trip histogram
static int is_measuring;
// The server whose connections send (and whose replies count while
// is_measuring): 0 with --port, the current turn's with --ports, -1 none.
static int active = -1;
static double window_start; // s, when the measured window began; 0 before
static uint64_t errors;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_self(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

// utime + stime of every thread of the server, in seconds.
static double cpu_server_of(int pid) {
  if (pid <= 0) return 0;
  char path[64], text[4096];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  size_t n = fread(text, 1, sizeof text - 1, f);
  fclose(f);
  text[n] = 0;
  char *p = strrchr(text, ')');
  if (!p) return 0;
  // After ")": field 3 (state) ... field 14 utime, 15 stime.
  unsigned long long utime = 0, stime = 0;
  int field = 2;
  for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
    field++;
    if (field == 14) utime = strtoull(tok, NULL, 10);
    if (field == 15) {
      stime = strtoull(tok, NULL, 10);
      break;
    }
  }
  return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static double cpu_server(void) { return cpu_server_of(server_pid); }

static void record_rtt(double seconds) {
  double us = seconds * 1e6;
  if (us < FINE_US) fine[(int)us]++;
  else {
    double ms = us / 1000;
    coarse[ms < COARSE_MS ? (int)ms : COARSE_MS - 1]++;
  }
}

static double percentile(double q, uint64_t total) {
  uint64_t rank = (uint64_t)ceil(q * (double)total), seen = 0;
  if (rank == 0) rank = 1;
  for (int i = 0; i < FINE_US; i++) {
    seen += fine[i];
    if (seen >= rank) return (i + 0.5) / 1000.0; // ms
  }
  for (int i = 0; i < COARSE_MS; i++) {
    seen += coarse[i];
    if (seen >= rank) return (double)i + 0.5;
  }
  return NAN;
}

// How long a message sent at `sent_at` had waited by `t`, counted inside
// the measured window only: a message sent before the window starts waits
// from the window start. So every wait is part of the window (at most its
// length) and a connection is not charged for time spent in the warm-up.
static double waited(double sent_at, double t) {
  return t - (sent_at > window_start ? sent_at : window_start);
}

static void note_wait(conn_t *c, double wait) {
  if (wait > c->longest_wait) c->longest_wait = wait;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Registers `events` for c's socket; only a change costs a system call.
// Re-registering EPOLLIN after every write made epoll_ctl a third system
// call per message beside the read and the write (strace -c, 1 s against
// the C server: 7,900 epoll_ctl for 7,851 writes; now 100 in all), and the
// client the limit for the C server (client CPU per message 9.8-13.7 µs
// before, 7.8-10.9 after, 3 alternated rounds).
static void watch(conn_t *c, uint32_t events, int op) {
  if (op == EPOLL_CTL_MOD && events == c->watching) return;
  struct epoll_event ev = {.events = events, .data.ptr = c};
  epoll_ctl(ep, op, c->fd, &ev);
  c->watching = events;
}

static int open_conn(conn_t *c, int to_port, int target) {
  memset(c, 0, sizeof *c);
  c->port = to_port;
  c->target = target;
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) {
    perror("socket");
    return -1;
  }
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)to_port);
  inet_pton(AF_INET, host, &addr.sin_addr);
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 &&
      errno != EINPROGRESS) {
    perror("connect");
    return -1;
  }
  watch(c, EPOLLOUT, EPOLL_CTL_ADD);
  return 0;
}

static void close_conn(conn_t *c) {
  if (c->fd >= 0) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
  }
  c->fd = -1;
  c->is_done = 1;
}

// Writes what is queued, all of it in one write where the socket takes it
// (pipelined messages, --depth > 1, go out together, as a pipelining
// client sends them); returns -1 when the connection broke.
static int pump(conn_t *c) {
  size_t most = (size_t)size * MAX_DEPTH;
  while (c->unsent > 0) {
    size_t chunk = c->unsent < most ? c->unsent : most;
    ssize_t n = write(c->fd, out_buf, chunk);
    if (n > 0) {
      c->unsent -= (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    return -1;
  }
  watch(c, c->unsent > 0 ? EPOLLIN | EPOLLOUT : EPOLLIN, EPOLL_CTL_MOD);
  return 0;
}

// Settles c's connect, reported by epoll events `ev`: 1 when it is up; 0
// when it failed (counted in *errs) and a new connect is under way (a
// listen backlog that overflows drops handshakes); -1 when no new socket
// could be opened.
static int finish_connect(conn_t *c, uint32_t ev, uint64_t *errs) {
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (!err && !(ev & (EPOLLERR | EPOLLHUP))) {
    c->is_connected = 1;
    return 1;
  }
  (*errs)++;
  close_conn(c);
  return open_conn(c, c->port, c->target) < 0 ? -1 : 0;
}

static void queue_message(conn_t *c, double t) {
  c->sent_at[(c->head + c->in_flight) % MAX_DEPTH] = t;
  c->in_flight++;
  c->unsent += (size_t)size;
}

// Returns how many messages completed; -1 when the connection ended.
static int on_readable(conn_t *c, double t) {
  int completed = 0;
  for (;;) {
    ssize_t n = read(c->fd, in_buf, 256 * 1024);
    if (n == 0) return -1;
    if (n < 0) {
      if (errno == EAGAIN) break;
      if (errno == EINTR) continue;
      return -1;
    }
    c->received += (uint64_t)n;
    while (c->received >= (uint64_t)size && c->in_flight > 0) {
      c->received -= (uint64_t)size;
      if (is_measuring && c->target == active) {
        record_rtt(t - c->sent_at[c->head]);
        note_wait(c, waited(c->sent_at[c->head], t));
      }
      c->head = (c->head + 1) % MAX_DEPTH;
      c->in_flight--;
      c->count++;
      completed++;
    }
    if (n < 256 * 1024) break;
  }
  return completed;
}

// Prints one JSON line of figures for the connections set[0..n) (one
// server's): messages echoed in the measured windows (`measured`), over
// `seconds` of them. `port` is printed when it is not 0 (--ports).
static void report(conn_t *set, int n, double seconds, double cpu,
                   double server_cpu, uint64_t errs, int to_port) {
  uint64_t total = 0;
  double sum = 0, sum_sq = 0;
  int served = 0;
  for (int i = 0; i < n; i++) {
    double m = (double)set[i].measured;
    total += set[i].measured;
    sum += m;
    sum_sq += m * m;
    if (m > 0) served++;
  }
  double jain = sum_sq > 0 ? sum * sum / ((double)n * sum_sq) : 0;
  // Longest wait per connection: its longest round trip replied in a
  // window, or, if longer, the age at a window's end of its oldest message
  // still unanswered. Both count from the window start at the earliest (see
  // `waited`). A connection that broke keeps only its replied waits.
  double *longest = malloc((size_t)n * sizeof *longest);
  for (int i = 0; i < n; i++) longest[i] = set[i].longest_wait * 1000; // ms
  qsort(longest, (size_t)n, sizeof *longest, by_value);
  int mid = n / 2;
  double wait_median = n % 2 ? longest[mid] : (longest[mid - 1] + longest[mid]) / 2;
  char port_field[32] = "";
  if (to_port) snprintf(port_field, sizeof port_field, "\"port\":%d,", to_port);
  printf("{%s\"mode\":\"pingpong\",\"conns\":%d,\"size\":%d,\"depth\":%d,"
         "\"seconds\":%.4f,\"messages\":%llu,\"msgsPerSec\":%.1f,"
         "\"mbPerSec\":%.3f,\"p50Ms\":%.4f,\"p99Ms\":%.4f,\"jain\":%.4f,"
         "\"served\":%d,\"maxWaitMedianMs\":%.3f,\"maxWaitMs\":%.3f,"
         "\"clientCpu\":%.4f,\"serverCpu\":%.4f,\"errors\":%llu}\n",
         port_field, n, size, depth, seconds, (unsigned long long)total,
         (double)total / seconds, (double)total * size / seconds / 1e6,
         percentile(0.5, total), percentile(0.99, total), jain, served,
         wait_median, longest[n - 1], cpu, server_cpu,
         (unsigned long long)errs);
  fflush(stdout);
  free(longest);
}

static double stdin_closed(void) {
  struct pollfd p = {.fd = 0, .events = POLLIN};
  if (poll(&p, 1, 0) > 0) {
    char b[256];
    return read(0, b, sizeof b) <= 0;
  }
  return 0;
}

// --ports: several servers, each with its own `conns` connections, driven
// one at a time in turns of `slice` seconds until each had `duration`
// seconds measured. The first `settle` seconds of a turn are not measured
// (the last server's replies still in flight, this one waking up). A slow
// spell of the machine then falls on every server's figures alike, instead
// of on whichever server ran during it. On the 2-core VM this was written
// on, 12 back-to-back 1 s runs of one raw Deno server gave 61k to 91k
// msgs/s, and in one round run one after another the C server echoed less
// than raw Deno.
typedef struct {
  int port, pid;
  double seconds, cpu, server_cpu;
  uint64_t errors;
  uint32_t *fine, *coarse;
} target_t;

// Queues messages on the active server's connection `c` up to `depth` in
// flight, and writes them; returns -1 when the connection broke.
static int top_up(conn_t *c, double t) {
  if (c->target != active || c->is_done || !c->is_connected) return 0;
  while (c->in_flight < depth) queue_message(c, t);
  return pump(c);
}

// Handles events until `until` (s). Counts connections that connected and
// got a first reply. Returns -1 when the client cannot go on.
static int serve_events(struct epoll_event *events, int max_events,
                        double until, target_t *targets, int *replied) {
  for (;;) {
    double t = now_s();
    if (t >= until) return 0;
    int wait_ms = (int)((until - t) * 1000) + 1;
    int count = epoll_wait(ep, events, max_events, wait_ms > 10 ? 10 : wait_ms);
    t = now_s();
    for (int e = 0; e < count; e++) {
      conn_t *c = events[e].data.ptr;
      if (c->is_done) continue;
      uint32_t ev = events[e].events;
      if (!c->is_connected) {
        int up = finish_connect(c, ev, &targets[c->target].errors);
        if (up < 0) return -1;
        if (up == 0) continue;
        watch(c, EPOLLIN, EPOLL_CTL_MOD);
        if (top_up(c, t) < 0) goto broken;
        continue;
      }
      if (ev & EPOLLIN) {
        uint64_t before = c->count;
        if (on_readable(c, t) < 0) goto broken;
        if (before == 0 && c->count > 0) replied[c->target]++;
      }
      if (top_up(c, t) < 0) goto broken;
      if ((ev & EPOLLOUT) && c->unsent > 0 && pump(c) < 0) goto broken;
      continue;
    broken:
      targets[c->target].errors++;
      close_conn(c);
    }
  }
}

static int run_slices(const char *port_list, const char *pid_list,
                      double slice, double settle) {
  target_t targets[64];
  int k = 0;
  for (const char *p = port_list; *p && k < 64; k++) {
    memset(&targets[k], 0, sizeof targets[k]);
    targets[k].port = atoi(p);
    targets[k].fine = calloc(FINE_US, sizeof(uint32_t));
    targets[k].coarse = calloc(COARSE_MS, sizeof(uint32_t));
    p = strchr(p, ',');
    if (!p) {
      k++;
      break;
    }
    p++;
  }
  for (int j = 0; pid_list && *pid_list && j < k; j++) {
    targets[j].pid = atoi(pid_list);
    pid_list = strchr(pid_list, ',');
    if (!pid_list) break;
    pid_list++;
  }
  if (k < 1 || slice <= settle) {
    fprintf(stderr, "bad --ports or --slice\n");
    return 2;
  }
  cs = calloc((size_t)(k * conns), sizeof(conn_t));
  int max_events = 4096, replied[64] = {0};
  struct epoll_event *events = calloc((size_t)max_events, sizeof *events);
  for (int j = 0; j < k; j++) {
    for (int i = 0; i < conns; i++) {
      if (open_conn(&cs[j * conns + i], targets[j].port, j) < 0) return 1;
    }
  }
  // Warm-up: each server in turn, `warmup` s and until `min-replied` of its
  // connections had a reply (10 s more at most).
  for (int j = 0; j < k; j++) {
    active = j;
    double start = now_s();
    for (int i = 0; i < conns; i++) {
      if (top_up(&cs[j * conns + i], start) < 0) close_conn(&cs[j * conns + i]);
    }
    while (now_s() < start + warmup ||
           (replied[j] < min_replied * conns && now_s() < start + warmup + 10)) {
      if (serve_events(events, max_events, now_s() + 0.01, targets, replied) < 0)
        return 1;
    }
  }
  int turns = (int)ceil(duration / (slice - settle) - 1e-9);
  for (int turn = 0; turn < turns; turn++) {
    for (int j = 0; j < k; j++) {
      target_t *g = &targets[j];
      conn_t *set = &cs[j * conns];
      active = j;
      double start = now_s();
      for (int i = 0; i < conns; i++) {
        if (top_up(&set[i], start) < 0) close_conn(&set[i]);
      }
      if (serve_events(events, max_events, start + settle, targets, replied) < 0)
        return 1;
      double cpu0 = cpu_self(), server_cpu0 = cpu_server_of(g->pid);
      fine = g->fine;
      coarse = g->coarse;
      window_start = now_s();
      is_measuring = 1;
      for (int i = 0; i < conns; i++) set[i].window_start = set[i].count;
      if (serve_events(events, max_events, start + slice, targets, replied) < 0)
        return 1;
      double t_end = now_s();
      is_measuring = 0;
      active = -1;
      g->seconds += t_end - window_start;
      g->cpu += cpu_self() - cpu0;
      g->server_cpu += cpu_server_of(g->pid) - server_cpu0;
      for (int i = 0; i < conns; i++) {
        conn_t *c = &set[i];
        c->measured += c->count - c->window_start;
        if (!c->is_done && c->in_flight > 0) {
          note_wait(c, waited(c->sent_at[c->head], t_end));
        }
      }
    }
  }
  for (int j = 0; j < k; j++) {
    fine = targets[j].fine;
    coarse = targets[j].coarse;
    report(&cs[j * conns], conns, targets[j].seconds, targets[j].cpu,
           targets[j].server_cpu, targets[j].errors, targets[j].port);
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *ports = NULL, *server_pids = NULL;
  double slice = 0.25, settle = 0.05;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--host")) host = v;
    else if (!strcmp(k, "--port")) port = atoi(v);
    else if (!strcmp(k, "--mode")) mode = v;
    else if (!strcmp(k, "--conns")) conns = atoi(v);
    else if (!strcmp(k, "--size")) size = atoi(v);
    else if (!strcmp(k, "--depth")) depth = atoi(v);
    else if (!strcmp(k, "--warmup")) warmup = atof(v);
    else if (!strcmp(k, "--duration")) duration = atof(v);
    else if (!strcmp(k, "--server-pid")) server_pid = atoi(v);
    else if (!strcmp(k, "--min-replied")) min_replied = atof(v);
    else if (!strcmp(k, "--ports")) ports = v;
    else if (!strcmp(k, "--server-pids")) server_pids = v;
    else if (!strcmp(k, "--slice")) slice = atof(v);
    else if (!strcmp(k, "--settle")) settle = atof(v);
    else {
      fprintf(stderr, "unknown option %s\n", k);
      return 2;
    }
  }
  if (depth < 1 || depth > MAX_DEPTH || size < 1 || conns < 1 ||
      (!port && !ports)) {
    fprintf(stderr, "bad options\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  int is_burst = !strcmp(mode, "burst"), is_idle = !strcmp(mode, "idle");
  out_buf = malloc((size_t)size * MAX_DEPTH);
  memset(out_buf, 'x', (size_t)size * MAX_DEPTH);
  in_buf = malloc(256 * 1024);
  ep = epoll_create1(0);
  if (ports) return run_slices(ports, server_pids, slice, settle);
  fine = calloc(FINE_US, sizeof(uint32_t));
  coarse = calloc(COARSE_MS, sizeof(uint32_t));
  active = 0;
  cs = calloc((size_t)conns, sizeof(conn_t));
  int max_events = 4096;
  struct epoll_event *events = calloc((size_t)max_events, sizeof *events);

  double t0 = now_s();
  for (int i = 0; i < conns; i++) {
    if (open_conn(&cs[i], port, 0) < 0) return 1;
  }
  int connected = 0, replied = 0, done = 0;
  double measure_end = 0;
  double cpu0 = 0, server_cpu0 = 0;
  int is_ready = 0; // idle: reported "ready"
  double limit = t0 + warmup + duration + 30; // hard bound on any run

  for (;;) {
    double t = now_s();
    if (t > limit) break;
    if (!is_burst && !is_idle && !is_measuring && window_start == 0 &&
        connected == conns && t - t0 >= warmup &&
        (replied >= min_replied * conns || t - t0 >= warmup + 10)) {
      is_measuring = 1;
      window_start = t;
      measure_end = t + duration;
      cpu0 = cpu_self();
      server_cpu0 = cpu_server();
      for (int i = 0; i < conns; i++) cs[i].window_start = cs[i].count;
    }
    if (is_measuring && t >= measure_end) break;
    if (is_burst && done == conns) break;
    if (is_idle && !is_ready && replied == conns) {
      is_ready = 1;
      printf("ready {\"connectSeconds\":%.4f,\"conns\":%d}\n", t - t0, conns);
      fflush(stdout);
      limit = t + duration;
    }
    if (is_ready && stdin_closed()) break;

    int count = epoll_wait(ep, events, max_events, is_ready ? 100 : 10);
    t = now_s();
    for (int e = 0; e < count; e++) {
      conn_t *c = events[e].data.ptr;
      if (c->is_done) continue;
      uint32_t ev = events[e].events;
      if (!c->is_connected) {
        int up = finish_connect(c, ev, &errors);
        if (up < 0) return 1;
        if (up == 0) continue;
        connected++;
        int first = is_burst || is_idle ? 1 : depth;
        for (int k = 0; k < first; k++) queue_message(c, t);
        if (pump(c) < 0) goto broken;
        continue;
      }
      if (ev & EPOLLIN) {
        uint64_t before = c->count;
        int completed = on_readable(c, t);
        if (completed < 0) goto broken;
        if (before == 0 && c->count > 0) replied++;
        if (is_burst && c->count > 0) {
          close_conn(c);
          done++;
          continue;
        }
        if (!is_idle) {
          for (int k = 0; k < completed; k++) queue_message(c, t);
        }
      }
      if ((ev & EPOLLOUT) || c->unsent > 0) {
        if (pump(c) < 0) goto broken;
      }
      continue;
    broken:
      errors++;
      close_conn(c);
      // idle: a connection the server dropped before its first reply (a
      // handshake lost to a full listen queue) is opened again, so the run
      // still reaches all its connections.
      if (is_idle && c->count == 0) {
        if (open_conn(c, c->port, c->target) < 0) return 1;
        continue;
      }
      done++;
    }
  }

  double t_end = now_s();
  if (is_burst || is_idle) {
    printf("{\"mode\":\"%s\",\"conns\":%d,\"completed\":%d,\"errors\":%llu,"
           "\"seconds\":%.4f,\"clientCpu\":%.4f}\n",
           mode, conns, is_burst ? done : replied, (unsigned long long)errors,
           t_end - t0, cpu_self());
    return 0;
  }
  if (!is_measuring) {
    printf("{\"error\":\"never started measuring\",\"connected\":%d,"
           "\"replied\":%d}\n",
           connected, replied);
    return 1;
  }
  double elapsed = t_end - window_start;
  double cpu = cpu_self() - cpu0, server_cpu = cpu_server() - server_cpu0;
  for (int i = 0; i < conns; i++) {
    conn_t *c = &cs[i];
    c->measured = c->count - c->window_start;
    if (!c->is_done && c->in_flight > 0) {
      note_wait(c, waited(c->sent_at[c->head], t_end));
    }
  }
  report(cs, conns, elapsed, cpu, server_cpu, errors, 0);
  return 0;
}
