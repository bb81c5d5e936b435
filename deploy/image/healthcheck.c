/*
 * bank-healthcheck: the container's health probe. The runtime image has no shell and no curl,
 * so this small static program does what `curl -f http://127.0.0.1:PORT/health/live` would:
 * it connects to the server on loopback (the port of BANK_LISTEN, default 8080), sends
 * `GET PATH HTTP/1.0` (PATH: the first argument, default /health/live) and exits 0 only on a
 * `200` status line, 1 otherwise (refused, timed out after 3 s, other status). Used by the
 * Dockerfile's HEALTHCHECK and the ECS task definition's container health check.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TIMEOUT_SECONDS 3
#define DEFAULT_PORT 8080
#define PATH_LEN_MAX 256

/* The port of BANK_LISTEN (`IP:PORT` or `[IPv6]:PORT`), or DEFAULT_PORT when unset. -1 if bad. */
static long listen_port(void) {
    const char *listen = getenv("BANK_LISTEN");
    if (listen == NULL || *listen == '\0') return DEFAULT_PORT;
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || colon[1] == '\0') return -1;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535) return -1;
    return port;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/health/live";
    if (path[0] != '/' || strlen(path) > PATH_LEN_MAX || strpbrk(path, " \r\n") != NULL) {
        fprintf(stderr, "bank-healthcheck: bad path\n");
        return 2;
    }
    long port = listen_port();
    if (port < 0) {
        fprintf(stderr, "bank-healthcheck: BANK_LISTEN has no port 1..65535\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 1;
    struct timeval timeout = {.tv_sec = TIMEOUT_SECONDS, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        fprintf(stderr, "bank-healthcheck: connect 127.0.0.1:%ld: %s\n", port, strerror(errno));
        return 1;
    }
    char request[PATH_LEN_MAX + 64];
    int n = snprintf(request, sizeof request, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (send(fd, request, (size_t)n, 0) != n) return 1;
    /* Only the status line matters: "HTTP/1.x 200 ...". */
    char status[32];
    size_t got = 0;
    while (got < sizeof status - 1) {
        ssize_t r = recv(fd, status + got, sizeof status - 1 - got, 0);
        if (r <= 0) break;
        got += (size_t)r;
    }
    status[got] = '\0';
    close(fd);
    if (strncmp(status, "HTTP/1.", 7) == 0 && strncmp(status + 8, " 200", 4) == 0) return 0;
    fprintf(stderr, "bank-healthcheck: %s answered %.12s\n", path, got ? status : "nothing");
    return 1;
}
