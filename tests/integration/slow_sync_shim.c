// An LD_PRELOAD library for tests: fdatasync(2) takes PGRAIL_TEST_SYNC_DELAY_MS longer, as on a
// slow disk, so that a test can show what waits for the audit log's sync and what must not.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>

int fdatasync(int fd) {
    static int (*real_fdatasync)(int);
    if (real_fdatasync == NULL) real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    const char* delay = getenv("PGRAIL_TEST_SYNC_DELAY_MS");
    if (delay != NULL) {
        const long ms = strtol(delay, NULL, 10);
        struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&pause, &pause) != 0) {
        }
    }
    return real_fdatasync(fd);
}
