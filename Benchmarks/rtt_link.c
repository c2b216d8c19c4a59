// rtt_link: a network link with a fixed delay, in user space, for the bench's round-trip-time
// variant (this VM's kernel has no netem). Opens two TUN devices and copies every IP packet read
// from one to the other after DELAY_US microseconds, both ways, in order: a round trip through
// the link takes twice the delay. Rtt.py moves one device into the resolvers' network namespace
// and routes the lab's addresses through it.
//
//   rtt_link <tun-a> <tun-b> <delay-us>
//
// Prints "ready" once both devices exist; runs until SIGTERM (the devices go with it), then
// prints how many packets went each way and how many were dropped. A queue holds at most
// MAX_QUEUED packets per direction; more are dropped, as a full router queue would.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_PACKET 65536
#define MAX_QUEUED 65536

struct packet {
  uint64_t due_ns;
  size_t length;
  struct packet *next;
  unsigned char data[];
};

struct direction {
  int from, to;
  struct packet *head, *tail;
  size_t queued;
  unsigned long long passed, dropped;
};

static volatile sig_atomic_t stopping = 0;
static void stop(int sig) {
  (void)sig;
  stopping = 1;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int open_tun(const char *name) {
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads every packet waiting on d->from into the queue, due `delay` from now.
static void take(struct direction *d, uint64_t delay) {
  static unsigned char buffer[MAX_PACKET];
  for (;;) {
    ssize_t n = read(d->from, buffer, sizeof buffer);
    if (n <= 0) return;  // EAGAIN: drained
    if (d->queued >= MAX_QUEUED) {
      d->dropped++;
      continue;
    }
    struct packet *p = malloc(sizeof *p + (size_t)n);
    if (p == NULL) {
      d->dropped++;
      continue;
    }
    p->due_ns = now_ns() + delay;
    p->length = (size_t)n;
    p->next = NULL;
    memcpy(p->data, buffer, (size_t)n);
    if (d->tail) d->tail->next = p;
    else d->head = p;
    d->tail = p;
    d->queued++;
  }
}

// Writes the packets whose time has come; returns the next one's due time (0: none queued).
static uint64_t give(struct direction *d, uint64_t now) {
  while (d->head && d->head->due_ns <= now) {
    struct packet *p = d->head;
    // A TUN write does not block for long: the kernel takes the packet or drops it.
    if (write(d->to, p->data, p->length) < 0) d->dropped++;
    else d->passed++;
    d->head = p->next;
    if (d->head == NULL) d->tail = NULL;
    d->queued--;
    free(p);
  }
  return d->head ? d->head->due_ns : 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: rtt_link <tun-a> <tun-b> <delay-us>\n");
    return 2;
  }
  char *end = NULL;
  long long delay_us = strtoll(argv[3], &end, 10);
  if (end == argv[3] || *end != '\0' || delay_us < 0 || delay_us > 10000000) {
    fprintf(stderr, "rtt_link: delay must be 0..10000000 microseconds, not %s\n", argv[3]);
    return 2;
  }
  uint64_t delay = (uint64_t)delay_us * 1000ull;
  int a = open_tun(argv[1]), b = open_tun(argv[2]);
  if (a < 0 || b < 0) {
    fprintf(stderr, "rtt_link: cannot create TUN devices %s, %s: %s\n", argv[1], argv[2], strerror(errno));
    return 1;
  }
  // Wake-ups within a microsecond or so of the due time, not the default 50 us slack.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = stop;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  printf("ready\n");
  fflush(stdout);
  struct direction ab = {.from = a, .to = b}, ba = {.from = b, .to = a};
  while (!stopping) {
    uint64_t now = now_ns();
    uint64_t next_ab = give(&ab, now), next_ba = give(&ba, now);
    uint64_t next = next_ab && next_ba ? (next_ab < next_ba ? next_ab : next_ba) : (next_ab | next_ba);
    struct pollfd fds[2] = {{.fd = a, .events = POLLIN}, {.fd = b, .events = POLLIN}};
    struct timespec wait, *timeout = NULL;
    if (next) {
      uint64_t left = next > now ? next - now : 0;
      wait.tv_sec = (time_t)(left / 1000000000ull);
      wait.tv_nsec = (long)(left % 1000000000ull);
      timeout = &wait;
    }
    if (ppoll(fds, 2, timeout, NULL) < 0 && errno != EINTR) {
      perror("rtt_link: ppoll");
      return 1;
    }
    if (fds[0].revents & POLLIN) take(&ab, delay);
    if (fds[1].revents & POLLIN) take(&ba, delay);
    if ((fds[0].revents | fds[1].revents) & (POLLERR | POLLHUP)) {
      fprintf(stderr, "rtt_link: device gone\n");
      return 1;
    }
  }
  fprintf(stderr, "rtt_link: %s->%s %llu packets (%llu dropped), %s->%s %llu (%llu dropped)\n", argv[1], argv[2],
          ab.passed, ab.dropped, argv[2], argv[1], ba.passed, ba.dropped);
  return 0;
}
