#define _GNU_SOURCE
/* A trivial Function handler, for `flotilla bench functions` and the Function tests: an
 * HTTP/1.1 server (one thread per connection, keep-alive) that answers every request with the
 * time it received it, in nanoseconds since the epoch (CLOCK_REALTIME), so the bench can time
 * publish -> handler receives on the same host. Built static by scripts/function-image.sh.
 *   echo-handler PORT [COLLECTOR_IP:PORT]
 *   echo-handler PORT --epoll
 * --epoll serves every connection from one thread with epoll (no "sleep", no collector): the
 * cheapest handler, for the throughput figure.
 * A body starting "sleep N" takes N ms; a body containing "poison" is answered 500. With a
 * collector, each request is reported to it as a line "<ce-id> <ce-deliverycount> ok|fail
 * <body>" (the body's first 100 bytes, newlines as spaces) before the answer (a request that cannot be reported is answered 503), so a test counts
 * what the handler really processed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in collector;
static int have_collector;

/* The value of header `name` (with its colon) in the head [buf, end), copied to out. */
static void header(const char *buf, const char *end, const char *name, char *out, size_t size) {
    size_t n = strlen(name);
    out[0] = 0;
    for (const char *line = buf; line && line < end; line = strstr(line, "\r\n"), line = line ? line + 2 : NULL) {
        if (strncasecmp(line, name, n) == 0) {
            const char *v = line + n, *stop = strstr(v, "\r\n");
            while (*v == ' ') v++;
            size_t len = stop ? (size_t)(stop - v) : 0;
            if (len >= size) len = size - 1;
            memcpy(out, v, len);
            out[len] = 0;
            return;
        }
    }
}

/* Sends one report line on *fd, connecting first where needed; 0 when it went out. */
static int report(int *fd, const char *line) {
    for (int tries = 0; tries < 2; tries++) {
        if (*fd < 0) {
            *fd = socket(AF_INET, SOCK_STREAM, 0);
            if (*fd < 0) return -1;
            if (connect(*fd, (struct sockaddr *)&collector, sizeof collector)) { close(*fd); *fd = -1; continue; }
        }
        ssize_t len = (ssize_t)strlen(line);
        if (write(*fd, line, (size_t)len) == len) return 0;
        close(*fd);
        *fd = -1;
    }
    return -1;
}

static void *serve(void *arg) {
    int fd = (int)(long)arg, out_fd = -1;
    char buf[65536];
    size_t have = 0;
    for (;;) {
        char *end = NULL;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            if (have == sizeof buf) goto done;
            ssize_t n = read(fd, buf + have, sizeof buf - have);
            if (n <= 0) goto done;
            have += (size_t)n;
        }
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        size_t head = (size_t)(end - buf) + 4, body = 0;
        char length[32];
        header(buf, end, "content-length:", length, sizeof length);
        body = strtoul(length, NULL, 10);
        while (have < head + body) { /* the rest of the body */
            if (head + body > sizeof buf) goto done;
            ssize_t n = read(fd, buf + have, sizeof buf - have);
            if (n <= 0) goto done;
            have += (size_t)n;
        }
        char text[256];
        size_t tlen = body < sizeof text - 1 ? body : sizeof text - 1;
        memcpy(text, buf + head, tlen);
        text[tlen] = 0;
        if (strncmp(text, "sleep ", 6) == 0) usleep((useconds_t)atoi(text + 6) * 1000);
        int poison = strstr(text, "poison") != NULL;
        const char *status = poison ? "500 Internal Server Error" : "200 OK";
        if (have_collector) {
            char id[160], delivery[16], line[512];
            header(buf, end, "ce-id:", id, sizeof id);
            header(buf, end, "ce-deliverycount:", delivery, sizeof delivery);
            if (tlen > 100) text[100] = 0;
            for (char *c = text; *c; c++) if (*c == '\n' || *c == '\r') *c = ' ';
            snprintf(line, sizeof line, "%s %s %s %s\n", id, delivery, poison ? "fail" : "ok", text);
            if (report(&out_fd, line)) status = "503 Service Unavailable";
        }
        char stamp[32], out[200];
        int len = snprintf(stamp, sizeof stamp, "%lld", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
        int total = snprintf(out, sizeof out, "HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", status, len, stamp);
        if (write(fd, out, (size_t)total) != total) goto done;
        memmove(buf, buf + head + body, have - head - body);
        have -= head + body;
    }
done:
    if (out_fd >= 0) close(out_fd);
    close(fd);
    return NULL;
}

/* One connection of the epoll server: what it has read and not yet answered. */
struct conn {
    int fd;
    size_t have;
    char buf[16384];
};

/* Answers every complete request in c's buffer; -1 when the connection is to be closed. */
static int answer_all(struct conn *c) {
    for (;;) {
        char *end = memmem(c->buf, c->have, "\r\n\r\n", 4);
        if (!end) return c->have == sizeof c->buf ? -1 : 0;
        size_t head = (size_t)(end - c->buf) + 4;
        char length[32];
        header(c->buf, end, "content-length:", length, sizeof length);
        size_t body = strtoul(length, NULL, 10);
        if (head + body > sizeof c->buf) return -1;
        if (c->have < head + body) return 0;
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        char stamp[32], out[160];
        int len = snprintf(stamp, sizeof stamp, "%lld", (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
        int total = snprintf(out, sizeof out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len, stamp);
        if (write(c->fd, out, (size_t)total) != total) return -1;
        memmove(c->buf, c->buf + head + body, c->have - head - body);
        c->have -= head + body;
    }
}

static void serve_epoll(int s) {
    int ep = epoll_create1(0), one = 1;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    fcntl(s, F_SETFL, O_NONBLOCK);
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    struct epoll_event ready[256];
    for (;;) {
        int n = epoll_wait(ep, ready, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = ready[i].data.ptr;
            if (!c) {
                int fd;
                while ((fd = accept4(s, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) { close(fd); continue; }
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            int closed = 0;
            for (;;) {
                ssize_t got = read(c->fd, c->buf + c->have, sizeof c->buf - c->have);
                if (got > 0) {
                    c->have += (size_t)got;
                    if (answer_all(c)) { closed = 1; break; }
                    continue;
                }
                if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
                closed = 1;
                break;
            }
            if (closed) {
                close(c->fd);
                free(c);
            }
        }
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080, one = 1;
    int epoll_mode = argc > 2 && strcmp(argv[2], "--epoll") == 0;
    if (argc > 2 && !epoll_mode) {
        char host[64];
        snprintf(host, sizeof host, "%s", argv[2]);
        char *colon = strrchr(host, ':');
        if (!colon) { fprintf(stderr, "collector: IP:PORT\n"); return 2; }
        *colon = 0;
        collector.sin_family = AF_INET;
        collector.sin_port = htons((unsigned short)atoi(colon + 1));
        if (inet_pton(AF_INET, host, &collector.sin_addr) != 1) { fprintf(stderr, "collector: IP:PORT\n"); return 2; }
        have_collector = 1;
    }
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons((unsigned short)port), .sin6_addr = in6addr_any};
    if (bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 1024)) { perror("listen"); return 1; }
    if (epoll_mode) {
        serve_epoll(s);
        return 1;
    }
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pthread_t t;
        if (pthread_create(&t, NULL, serve, (void *)(long)c) == 0) pthread_detach(t); else close(c);
    }
}
