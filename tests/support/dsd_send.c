/* A DogStatsD sender small enough to run in a busybox container (built static at test time by
 * tests/dogstatsd.rs): sends argv[2..] joined by newlines as one datagram to the Unix datagram
 * socket argv[1], then stays alive argv[last] seconds so that the agent can still read the
 * sender's /proc/<pid>/cgroup (origin detection). Usage: dsd_send SOCKET LINE... SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SOCKET LINE... SECONDS\n", argv[0]);
        return 2;
    }
    char buf[8192];
    size_t n = 0;
    for (int i = 2; i < argc - 1; i++) {
        size_t l = strlen(argv[i]);
        if (n + l + 1 > sizeof buf) {
            fprintf(stderr, "payload too long\n");
            return 2;
        }
        if (i > 2) buf[n++] = '\n';
        memcpy(buf + n, argv[i], l);
        n += l;
    }
    struct sockaddr_un to = {.sun_family = AF_UNIX};
    strncpy(to.sun_path, argv[1], sizeof to.sun_path - 1);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s < 0 || sendto(s, buf, n, 0, (struct sockaddr *)&to, sizeof to) != (ssize_t)n) {
        perror("send");
        return 1;
    }
    printf("sent %zu bytes\n", n);
    fflush(stdout);
    sleep((unsigned)atoi(argv[argc - 1]));
    return 0;
}
