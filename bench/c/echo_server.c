// The C-speed baseline: a single-threaded epoll echo server. If the load
// client can drive this faster than raw Deno, the client is not what limits
// the Deno figures.
//
//   gcc -O2 -o echo_server echo_server.c && ./echo_server [port]
//
// Prints "listening on 127.0.0.1:PORT" first, like the corio examples.

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 1024

// Bytes read but not yet written back (a peer that reads slower than it
// sends): kept per descriptor, sent when the socket is writable again.
typedef struct {
  char *data;
  size_t len;
} pending_t;

static pending_t *pending;
static int max_fds;

static void drop(int ep, int fd) {
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
  close(fd);
  free(pending[fd].data);
  pending[fd].data = NULL;
  pending[fd].len = 0;
}

static int flush(int fd, const char *data, size_t len, size_t *written) {
  *written = 0;
  while (*written < len) {
    ssize_t n = write(fd, data + *written, len - *written);
    if (n > 0) {
      *written += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 0;
  signal(SIGPIPE, SIG_IGN);
  max_fds = 1 << 17;
  pending = calloc((size_t)max_fds, sizeof(pending_t));
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 ||
      listen(lfd, 4096) < 0) {
    perror("listen");
    return 1;
  }
  socklen_t alen = sizeof addr;
  getsockname(lfd, (struct sockaddr *)&addr, &alen);
  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event events[MAX_EVENTS];
  static char buf[BUF_SIZE];

  for (;;) {
    int count = epoll_wait(ep, events, MAX_EVENTS, -1);
    if (count < 0) {
      if (errno == EINTR) continue;
      perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < count; i++) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
          if (cfd < 0) break;
          if (cfd >= max_fds) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      pending_t *p = &pending[fd];
      if (events[i].events & EPOLLOUT) {
        size_t written;
        if (flush(fd, p->data, p->len, &written) < 0) {
          drop(ep, fd);
          continue;
        }
        memmove(p->data, p->data + written, p->len - written);
        p->len -= written;
        if (p->len == 0) {
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
          epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
        }
        continue;
      }
      if (p->len > 0) continue; // backpressure: wait for EPOLLOUT first
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        drop(ep, fd);
        continue;
      }
      size_t written;
      if (flush(fd, buf, (size_t)n, &written) < 0) {
        drop(ep, fd);
        continue;
      }
      if (written < (size_t)n) {
        p->data = realloc(p->data, (size_t)n - written);
        memcpy(p->data, buf + written, (size_t)n - written);
        p->len = (size_t)n - written;
        struct epoll_event cev = {.events = EPOLLOUT, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
      }
    }
  }
}
