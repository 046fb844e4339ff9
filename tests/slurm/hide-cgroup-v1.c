/*
 * LD_PRELOAD shim for tests/tests/slurm.rs: makes a hybrid cgroup host look like a pure cgroup v2
 * one to Slurm.
 *
 * Slurm's cgroup/v2 plugin (22.05) reads /proc/self/cgroup and stops with "Hybrid mode is not
 * supported" when it lists any cgroup v1 hierarchy. On a hybrid host every process lists the v1
 * hierarchies mounted anywhere on the machine (no namespace hides them), so slurmd and
 * slurmstepd get a copy of /proc/self/cgroup with only the cgroup v2 line ("0::<path>").
 * Nothing else is changed: the plugin then creates its cgroups in the cgroup2 tree as on any
 * pure v2 node.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int is_self_cgroup(const char *path)
{
    return path && (strcmp(path, "/proc/self/cgroup") == 0 || strcmp(path, "/proc/thread-self/cgroup") == 0);
}

/* A memfd holding the "0::" lines of /proc/self/cgroup. */
static int v2_lines(void)
{
    int (*real_open)(const char *, int, ...) = dlsym(RTLD_NEXT, "open");
    int in = real_open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return in;
    static __thread char buf[65536];
    ssize_t n, len = 0;
    while (len < (ssize_t)sizeof(buf) - 1 && (n = read(in, buf + len, sizeof(buf) - 1 - len)) > 0)
        len += n;
    close(in);
    buf[len] = 0;
    int out = memfd_create("cgroup", MFD_CLOEXEC);
    if (out < 0)
        return out;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "0::", 3) == 0) {
            size_t l = strlen(line);
            if (write(out, line, l) != (ssize_t)l || write(out, "\n", 1) != 1) {
                close(out);
                return -1;
            }
        }
    }
    lseek(out, 0, SEEK_SET);
    return out;
}

#define OPEN_LIKE(name)                                                                            \
    int name(const char *path, int flags, ...)                                                     \
    {                                                                                              \
        if (is_self_cgroup(path))                                                                  \
            return v2_lines();                                                                     \
        va_list ap;                                                                                \
        va_start(ap, flags);                                                                       \
        mode_t mode = va_arg(ap, mode_t);                                                          \
        va_end(ap);                                                                                \
        int (*real)(const char *, int, ...) = dlsym(RTLD_NEXT, #name);                             \
        return real(path, flags, mode);                                                            \
    }
OPEN_LIKE(open)
OPEN_LIKE(open64)

int openat(int dir, const char *path, int flags, ...)
{
    if (is_self_cgroup(path))
        return v2_lines();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = va_arg(ap, mode_t);
    va_end(ap);
    int (*real)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
    return real(dir, path, flags, mode);
}

FILE *fopen(const char *path, const char *mode)
{
    if (is_self_cgroup(path)) {
        int fd = v2_lines();
        return fd < 0 ? NULL : fdopen(fd, mode);
    }
    FILE *(*real)(const char *, const char *) = dlsym(RTLD_NEXT, "fopen");
    return real(path, mode);
}

FILE *fopen64(const char *path, const char *mode)
{
    return fopen(path, mode);
}
