/*
 * The daemon's shim logger: the program containerd's runc shim starts for a
 * container logged with `binary://` (as nerdctl's logger is started). The shim
 * hands it the container's stdout and stderr as fds 3 and 4, waits for fd 5 to
 * close before it starts the container, and closes the pipes when the task is
 * deleted. The logger appends Docker json-file entries until both streams end.
 * It is the shim's child, not the daemon's, so a container keeps writing — and
 * never blocks on a full pipe — while the daemon is down.
 *
 * It is C, compiled by the daemon at start (Engine.ts), because the shim waits
 * for it on every container start: Node needs ~100 ms to boot, this ~1 ms.
 * The format is JsonLogFile.ts's, entry for entry (test/daemon/ShimLogger.test.ts
 * compares the two): lines cut at each newline and every 16 KiB, the escaping
 * of Go's encoder (`<>&` and U+2028/9 too; invalid UTF-8 as U+FFFD), the time
 * as Go's RFC3339Nano, and rotation before a write that would pass max-size.
 *
 * SIGTERM (sent by the shim when the task is deleted) is ignored: the streams
 * are read to their end; the shim waits 12 s before SIGKILL.
 *
 * Usage: logger <log root> [""], with CONTAINER_ID set (the shim sets it, and
 * passes the URI's query `?<log root>` as those two arguments); the options are
 * <root>/<id>/log-config.json ({"maxSize":n,"maxFiles":n}).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_LINE (16 * 1024)

static char path[4096];
static int out_fd = -1;
static long long size;
static long long max_size = -1;
static int max_files = 1;

/* The partial line of each stream, at most MAX_LINE bytes. */
static char partial[2][MAX_LINE];
static size_t partial_len[2];
static const char *stream_name[2] = { "stdout", "stderr" };

/* One chunk's entries, written at once. */
static char *batch;
static size_t batch_len, batch_cap;

static void die(const char *what) {
  fprintf(stderr, "effect-containerd logger: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void reserve(size_t more) {
  if (batch_len + more <= batch_cap) return;
  while (batch_len + more > batch_cap) batch_cap = batch_cap ? batch_cap * 2 : 65536;
  batch = realloc(batch, batch_cap);
  if (batch == NULL) die("out of memory");
}

static void put(const char *s, size_t n) {
  reserve(n);
  memcpy(batch + batch_len, s, n);
  batch_len += n;
}

static void puts_(const char *s) { put(s, strlen(s)); }

static void put_escaped_char(unsigned int c) {
  char buf[8];
  switch (c) {
    case '"': puts_("\\\""); return;
    case '\\': puts_("\\\\"); return;
    case '\n': puts_("\\n"); return;
    case '\r': puts_("\\r"); return;
    default:
      snprintf(buf, sizeof buf, "\\u%04x", c);
      puts_(buf);
  }
}

/*
 * The length of the valid UTF-8 sequence at p (at most n bytes), or, as a
 * negative number, how many bytes make its invalid maximal subpart — the unit
 * the WHATWG decoder (Node's Buffer#toString) replaces by one U+FFFD.
 */
static long utf8_length(const unsigned char *p, size_t n) {
  unsigned char c = p[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xbf;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) need = 1;
  else if (c >= 0xe0 && c <= 0xef) { need = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
  else if (c >= 0xf0 && c <= 0xf4) { need = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
  else return -1;
  for (size_t i = 1; i <= need; i++) {
    if (i >= n || p[i] < lo || p[i] > hi) return -(long)i;
    lo = 0x80;
    hi = 0xbf;
  }
  return (long)need + 1;
}

/* Appends `{"log":"…","stream":"…","time":"…"}\n` for bytes [p, p+n). */
static void put_entry(int stream, const unsigned char *p, size_t n, const char *time) {
  puts_("{\"log\":\"");
  for (size_t i = 0; i < n;) {
    unsigned char c = p[i];
    if (c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&') {
      put_escaped_char(c);
      i++;
      continue;
    }
    if (c < 0x80) {
      put((const char *)p + i, 1);
      i++;
      continue;
    }
    long valid = utf8_length(p + i, n - i);
    if (valid < 0) {
      puts_("\xef\xbf\xbd"); /* U+FFFD, as Buffer#toString writes it */
      i += (size_t)-valid;
      continue;
    }
    size_t len = (size_t)valid;
    if (len == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 && (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)) {
      put_escaped_char(p[i + 2] == 0xa8 ? 0x2028 : 0x2029);
    } else {
      put((const char *)p + i, len);
    }
    i += len;
  }
  puts_("\",\"stream\":\"");
  puts_(stream_name[stream]);
  puts_("\",\"time\":\"");
  puts_(time);
  puts_("\"}\n");
}

/* Now as Go's RFC3339Nano (UTC; trailing zeros of the fraction dropped). */
static void now(char *buf, size_t cap) {
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  if (ts.tv_nsec != 0) {
    char fraction[16];
    snprintf(fraction, sizeof fraction, "%09ld", ts.tv_nsec);
    for (int i = 8; i > 0 && fraction[i] == '0'; i--) fraction[i] = '\0';
    n += snprintf(buf + n, cap - n, ".%s", fraction);
  }
  snprintf(buf + n, cap - n, "Z");
}

/*
 * Opens the log. A failure (disk full, permissions) is reported and the output
 * dropped until a later write opens it: exiting would close the pipes, and the
 * container would get SIGPIPE on its next write.
 */
static void open_log(int truncate) {
  static int reported;
  out_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | (truncate ? O_TRUNC : 0), 0640);
  if (out_fd < 0) {
    if (!reported) fprintf(stderr, "effect-containerd logger: open %s: %s\n", path, strerror(errno));
    reported = 1;
    return;
  }
  reported = 0;
  struct stat st;
  size = fstat(out_fd, &st) == 0 ? st.st_size : 0;
}

/* dockerd's rotate(): drop the oldest, shift the others up, begin a new file. */
static void rotate(void) {
  char from[4200], to[4200];
  if (out_fd >= 0) close(out_fd);
  if (max_files > 1) {
    snprintf(to, sizeof to, "%s.%d", path, max_files - 1);
    unlink(to);
    for (int i = max_files - 1; i > 1; i--) {
      snprintf(from, sizeof from, "%s.%d", path, i - 1);
      snprintf(to, sizeof to, "%s.%d", path, i);
      rename(from, to);
    }
    snprintf(to, sizeof to, "%s.1", path);
    rename(path, to);
  }
  open_log(1);
}

static void write_all(const char *p, size_t n) {
  if (out_fd < 0) open_log(0);
  if (out_fd < 0) return;
  while (n > 0) {
    ssize_t w = write(out_fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      /* As dockerd's copier: the entry is dropped, the container goes on. */
      return;
    }
    p += w;
    n -= (size_t)w;
    size += w;
  }
}

/* Writes the batch entry by entry, rotating between entries where the next would pass max-size. */
static void flush_batch(void) {
  size_t start = 0, pending = 0;
  for (size_t i = 0; i < batch_len; i++) {
    if (batch[i] != '\n') continue;
    size_t entry = i + 1 - (start + pending);
    if (max_size > 0 && size + (long long)pending > 0 && size + (long long)pending + (long long)entry > max_size) {
      write_all(batch + start, pending);
      start += pending;
      pending = 0;
      rotate();
    }
    pending += entry;
  }
  write_all(batch + start, pending);
  batch_len = 0;
}

/* Cuts as dockerd's copier: at each newline, and every MAX_LINE bytes of a line without one. */
static void consume(int stream, const unsigned char *data, size_t n, const char *time) {
  size_t i = 0;
  while (i < n) {
    const unsigned char *nl = memchr(data + i, '\n', n - i);
    size_t take = nl ? (size_t)(nl - (data + i)) + 1 : n - i;
    size_t room = MAX_LINE - partial_len[stream];
    if (take > room) take = room;
    memcpy(partial[stream] + partial_len[stream], data + i, take);
    partial_len[stream] += take;
    i += take;
    int complete = partial[stream][partial_len[stream] - 1] == '\n';
    if (complete || partial_len[stream] == MAX_LINE) {
      put_entry(stream, (const unsigned char *)partial[stream], partial_len[stream], time);
      partial_len[stream] = 0;
    }
  }
}

static long long config_number(const char *json, const char *key) {
  const char *at = strstr(json, key);
  if (at == NULL) return -1;
  at = strchr(at + strlen(key), ':');
  if (at == NULL) return -1;
  long long n = strtoll(at + 1, NULL, 10);
  return n > 0 ? n : -1;
}

int main(int argc, char **argv) {
  const char *id = getenv("CONTAINER_ID");
  if (argc < 2 || id == NULL || *id == '\0') {
    fprintf(stderr, "usage: logger <log root>, with CONTAINER_ID set (the shim sets it)\n");
    return 2;
  }
  signal(SIGTERM, SIG_IGN);
  signal(SIGPIPE, SIG_IGN);

  char config_path[4096], config[512] = "";
  snprintf(config_path, sizeof config_path, "%s/%s/log-config.json", argv[1], id);
  int cfd = open(config_path, O_RDONLY);
  if (cfd >= 0) {
    ssize_t r = read(cfd, config, sizeof config - 1);
    if (r > 0) config[r] = '\0';
    close(cfd);
  }
  max_size = config_number(config, "\"maxSize\"");
  long long files = config_number(config, "\"maxFiles\"");
  max_files = files > 0 ? (int)files : 1;

  char dir[2048];
  if (snprintf(dir, sizeof dir, "%s/%s", argv[1], id) >= (int)sizeof dir) {
    errno = ENAMETOOLONG;
    die(argv[1]);
  }
  mkdir(argv[1], 0750);
  mkdir(dir, 0750);
  snprintf(path, sizeof path, "%s/%s-json.log", dir, id);
  open_log(0);

  /* Ready: the shim starts the container once this closes. */
  close(5);

  struct pollfd fds[2] = { { .fd = 3, .events = POLLIN }, { .fd = 4, .events = POLLIN } };
  int open_streams = 2;
  static unsigned char buf[65536];
  char time[64];
  while (open_streams > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    for (int s = 0; s < 2; s++) {
      if (fds[s].fd < 0 || fds[s].revents == 0) continue;
      ssize_t r = read(fds[s].fd, buf, sizeof buf);
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (r <= 0) {
        close(fds[s].fd);
        fds[s].fd = -1;
        open_streams--;
        continue;
      }
      now(time, sizeof time);
      consume(s, buf, (size_t)r, time);
      flush_batch();
    }
  }
  /* What is left of each stream's last line, without a newline (dockerd's copier at EOF). */
  now(time, sizeof time);
  for (int s = 0; s < 2; s++) {
    if (partial_len[s] > 0) put_entry(s, (const unsigned char *)partial[s], partial_len[s], time);
  }
  flush_batch();
  if (out_fd >= 0) close(out_fd);
  return 0;
}
