/* LD_PRELOAD shim for `make bench`: every regular file a program opened for writing is
 * fsync()ed when it is closed (fclose or close), before the program goes on.
 *
 * DCMTK storescp closes each received file before it sends the C-STORE response, so under
 * this shim storescp acknowledges an instance only once it is on disk: the same promise as
 * the gateway's spool, in DCMTK's own C code. bench/dcmtk_fsync.py compiles and uses it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int written_regular_file(int fd) {
    struct stat st;
    int flags = fd >= 0 ? fcntl(fd, F_GETFL) : -1;
    return flags >= 0 && (flags & O_ACCMODE) != O_RDONLY && fstat(fd, &st) == 0 &&
           S_ISREG(st.st_mode);
}

int fclose(FILE *stream) {
    static int (*real_fclose)(FILE *);
    if (!real_fclose) real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    int fd = fileno(stream);
    if (written_regular_file(fd)) {
        fflush(stream);
        fsync(fd);
    }
    return real_fclose(stream);
}

int close(int fd) {
    static int (*real_close)(int);
    if (!real_close) real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (written_regular_file(fd)) fsync(fd);
    return real_close(fd);
}
