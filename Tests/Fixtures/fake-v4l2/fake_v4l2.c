/*
 * fake_v4l2.c: an LD_PRELOAD stand-in for one V4L2 capture device.
 *
 * The test machines have no V4L2 in the kernel, and Debian's FFmpeg is built
 * without libv4l2, so libavdevice's v4l2 input calls libc's open/ioctl/mmap
 * itself. This library answers those calls for a single path and passes
 * every other path and fd through to the real libc (dlsym RTLD_NEXT).
 *
 * The fd handed out for the device IS a memfd that holds all the capture
 * buffers, so FFmpeg's own mmap(fd, buf.m.offset) works with the real mmap
 * and the library needs no mmap/munmap interposers.
 *
 * Behaviour (environment, pattern, unplug rules) is documented in README.md.
 */
#define _GNU_SOURCE
#undef _FORTIFY_SOURCE /* fortified headers turn open() into an inline wrapper */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define MAX_OPEN 8
#define MAX_BUFS 8     /* FFmpeg asks for 256; UVC gives 32; 8 keeps a 1080p memfd at 33 MB */
#define SLICE_NS 100000000LL /* blocked waits wake this often to notice the unplug file */

/* ---- configuration, read once at first use ---- */
static const char *cfg_path = "/dev/video-fake0";
static const char *cfg_unplug;                    /* NULL: no unplug file */
static uint32_t cfg_fmts[2] = {V4L2_PIX_FMT_YUYV}; /* first one is the current format at open */
static int cfg_nfmts = 1;
static unsigned cfg_sizes[3][2] = {{640, 480}, {1920, 1080}, {320, 240}};
static int cfg_nsizes = 3;
static unsigned cfg_fps_num = 30, cfg_fps_den = 1;
static long long cfg_fail_after = -1;             /* -1: never */
static int cfg_debug;                             /* 1: log ioctls but QBUF/DQBUF on stderr; 2: all */
static int fail_fired;                            /* FAIL_AFTER has created the unplug file */

/* ---- the real libc ---- */
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_poll)(struct pollfd *, nfds_t, int);
static int (*real_select)(int, fd_set *, fd_set *, fd_set *, struct timeval *);
static int (*real_stat)(const char *, struct stat *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real_access)(const char *, int);
static int (*real_fstatat)(int, const char *, struct stat *, int);
static int (*real_statx)(int, const char *, int, unsigned, struct statx *);

/* One open of the device. Slots are never freed, only marked unused, so a
 * thread blocked in DQBUF can notice (by gen) that another thread closed it. */
struct cam {
    int fd;                 /* -1: slot unused */
    ino_t ino;              /* the memfd's inode: a reused fd number is not ours */
    unsigned gen;
    uint32_t fourcc;
    unsigned w, h, sizeimage;
    unsigned nbufs;
    size_t stride;          /* page-aligned distance between buffers in the memfd */
    uint8_t *mem;           /* our own mapping of the whole memfd */
    int queued[MAX_BUFS];
    unsigned q[MAX_BUFS], qhead, qlen; /* FIFO of queued buffer indices */
    int streaming, dead;
    int64_t t0;             /* CLOCK_MONOTONIC ns at STREAMON; frame k is due at t0 + k*period */
    uint32_t seq;           /* next frame's sequence number (= pattern frame number) */
    long long delivered;
};
static struct cam cams[MAX_OPEN];
static atomic_int nopen; /* lets unrelated ioctl/poll calls skip the lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Bar colours (Y, U, V), deliberately beyond BT.601's legal range so that
 * every RGB component clips to exactly 0 or 255: a raw capture converted
 * with swscale matches pattern.py bit for bit, rounding notwithstanding. */
static const uint8_t bars[8][3] = {
    {250, 128, 128}, /* white   */ {222, 4, 150},   /* yellow  */
    {176, 172, 2},   /* cyan    */ {150, 20, 20},   /* green   */
    {104, 230, 230}, /* magenta */ {76, 85, 250},   /* red     */
    {32, 250, 108},  /* blue    */ {4, 128, 128},   /* black   */
};
#define Y_ONE 250
#define Y_ZERO 4

/* A fork taken while another thread held the lock must not leave the child
 * (which may close() fds before exec) waiting for it forever. */
static void after_fork_in_child(void) { pthread_mutex_init(&lock, NULL); }

static void init(void)
{
#define REAL(name) real_##name = dlsym(RTLD_NEXT, #name)
    REAL(open); REAL(open64); REAL(openat); REAL(openat64); REAL(close); REAL(ioctl);
    REAL(poll); REAL(select); REAL(stat); REAL(lstat); REAL(stat64); REAL(lstat64); REAL(access);
    REAL(fstatat); REAL(statx);
    const char *v;
    if ((v = getenv("FAKE_V4L2_PATH")) && *v) cfg_path = v;
    if ((v = getenv("FAKE_V4L2_DEBUG")) && *v) cfg_debug = atoi(v);
    if ((v = getenv("FAKE_V4L2_UNPLUG_FILE")) && *v) cfg_unplug = v;
    if ((v = getenv("FAKE_V4L2_FAIL_AFTER")) && *v) cfg_fail_after = atoll(v);
    if ((v = getenv("FAKE_V4L2_FORMAT")) && *v) { /* "YUYV", "NV12", "NV12,YUYV", ... */
        int n = 0;
        for (const char *t = v; *t && n < 2; t += strcspn(t, ",") + (t[strcspn(t, ",")] == ',')) {
            uint32_t f = !strncasecmp(t, "YUYV", 4) ? V4L2_PIX_FMT_YUYV
                       : !strncasecmp(t, "NV12", 4) ? V4L2_PIX_FMT_NV12 : 0;
            if (f && !(n == 1 && cfg_fmts[0] == f)) cfg_fmts[n++] = f;
        }
        if (n) cfg_nfmts = n;
    }
    unsigned w, h, a, b = 1;
    if ((v = getenv("FAKE_V4L2_SIZE")) && sscanf(v, "%ux%u", &w, &h) == 2 && w >= 2 && h >= 2) {
        w &= ~1u, h &= ~1u; /* YUYV pairs and NV12 chroma need even sizes */
        int n = 1;
        cfg_sizes[0][0] = w, cfg_sizes[0][1] = h;
        if (!(w == 1920 && h == 1080)) cfg_sizes[n][0] = 1920, cfg_sizes[n++][1] = 1080;
        if (!(w == 320 && h == 240)) cfg_sizes[n][0] = 320, cfg_sizes[n++][1] = 240;
        cfg_nsizes = n;
    }
    if ((v = getenv("FAKE_V4L2_FPS")) && sscanf(v, "%u/%u", &a, &b) >= 1 && a > 0 && b > 0)
        cfg_fps_num = a, cfg_fps_den = b;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cond, &ca);
    for (int i = 0; i < MAX_OPEN; i++) cams[i].fd = -1;
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t due_ns(const struct cam *c, uint32_t k)
{
    return c->t0 + (int64_t)((__int128)k * cfg_fps_den * 1000000000 / cfg_fps_num);
}

static unsigned frame_bytes(uint32_t fourcc, unsigned w, unsigned h)
{
    return fourcc == V4L2_PIX_FMT_YUYV ? w * h * 2 : w * h * 3 / 2;
}

static int unplugged(void)
{
    return cfg_unplug && faccessat(AT_FDCWD, cfg_unplug, F_OK, 0) == 0;
}

static int is_our_path(const char *p) { return p && strcmp(p, cfg_path) == 0; }

static void free_bufs(struct cam *c)
{
    if (c->mem) munmap(c->mem, c->stride * c->nbufs);
    c->mem = NULL, c->nbufs = 0, c->qlen = 0;
    memset(c->queued, 0, sizeof c->queued);
}

/* Caller holds the lock. The inode check catches an fd closed behind our back
 * (close_range, dup2 over it) whose number now belongs to something else. */
static struct cam *find(int fd)
{
    struct stat st;
    for (int i = 0; i < MAX_OPEN; i++) {
        if (cams[i].fd != fd) continue;
        if (fstat(fd, &st) == 0 && st.st_ino == cams[i].ino) return &cams[i];
        free_bufs(&cams[i]); /* stale: forget it */
        cams[i].fd = -1, cams[i].gen++;
        atomic_fetch_sub(&nopen, 1);
    }
    return NULL;
}

/* ---- open / close ---- */

static int fake_open(int flags)
{
    if (unplugged()) { errno = ENODEV; return -1; }
    int fd = memfd_create("fake-v4l2", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
    if (fd < 0) return -1;
    if (flags & O_NONBLOCK) fcntl(fd, F_SETFL, O_NONBLOCK); /* DQBUF reads it back via F_GETFL */
    struct stat st;
    fstat(fd, &st);
    pthread_mutex_lock(&lock);
    struct cam *c = NULL;
    for (int i = 0; i < MAX_OPEN && !c; i++)
        if (cams[i].fd < 0) c = &cams[i];
    if (!c) { pthread_mutex_unlock(&lock); real_close(fd); errno = EBUSY; return -1; }
    unsigned gen = c->gen + 1;
    memset(c, 0, sizeof *c);
    c->fd = fd, c->ino = st.st_ino, c->gen = gen;
    c->fourcc = cfg_fmts[0], c->w = cfg_sizes[0][0], c->h = cfg_sizes[0][1];
    c->sizeimage = frame_bytes(c->fourcc, c->w, c->h);
    atomic_fetch_add(&nopen, 1);
    pthread_mutex_unlock(&lock);
    return fd;
}

#define NEEDS_MODE(f) (((f) & O_CREAT) || ((f) & O_TMPFILE) == O_TMPFILE)
#define OPEN_WRAPPER(name, real)                                            \
    int name(const char *path, int flags, ...)                              \
    {                                                                       \
        pthread_once(&once, init);                                          \
        if (is_our_path(path)) return fake_open(flags);                     \
        va_list ap; va_start(ap, flags);                                    \
        mode_t mode = NEEDS_MODE(flags) ? va_arg(ap, mode_t) : 0;            \
        va_end(ap);                                                         \
        return real(path, flags, mode);                                     \
    }
OPEN_WRAPPER(open, real_open)
OPEN_WRAPPER(open64, real_open64) /* what libavdevice actually imports */

#define OPENAT_WRAPPER(name, real)                                          \
    int name(int dirfd, const char *path, int flags, ...)                   \
    {                                                                       \
        pthread_once(&once, init);                                          \
        if (is_our_path(path) && (path[0] == '/' || dirfd == AT_FDCWD))     \
            return fake_open(flags);                                        \
        va_list ap; va_start(ap, flags);                                    \
        mode_t mode = NEEDS_MODE(flags) ? va_arg(ap, mode_t) : 0;            \
        va_end(ap);                                                         \
        return real(dirfd, path, flags, mode);                              \
    }
OPENAT_WRAPPER(openat, real_openat)
OPENAT_WRAPPER(openat64, real_openat64)

/* _FORTIFY_SOURCE builds (Debian's FFmpeg among them) call these instead. */
int __open_2(const char *path, int flags) { return open(path, flags); }
int __open64_2(const char *path, int flags) { return open64(path, flags); }

int close(int fd)
{
    pthread_once(&once, init);
    if (atomic_load(&nopen) > 0) {
        pthread_mutex_lock(&lock);
        struct cam *c = find(fd);
        if (c) {
            free_bufs(c);
            c->fd = -1, c->gen++;
            atomic_fetch_sub(&nopen, 1);
            pthread_cond_broadcast(&cond);
        }
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

/* ---- stat / access: the device node exists while plugged in ---- */

/* 1 if the path is ours (then *rc and errno are the answer), 0 to pass through. */
static int stat_ours(int dirfd, const char *path, struct stat *st, int *rc)
{
    pthread_once(&once, init);
    if (!is_our_path(path) || (path[0] != '/' && dirfd != AT_FDCWD)) return 0;
    *rc = unplugged() ? (errno = ENOENT, -1) : 0;
    if (*rc == 0 && st) {
        memset(st, 0, sizeof *st);
        st->st_mode = S_IFCHR | 0660;
        st->st_rdev = makedev(81, 0); /* the V4L2 major */
        st->st_nlink = 1, st->st_uid = getuid(), st->st_gid = getgid(), st->st_blksize = 4096;
        clock_gettime(CLOCK_REALTIME, &st->st_mtim);
        st->st_atim = st->st_ctim = st->st_mtim;
    }
    return 1;
}

/* struct stat64 has struct stat's layout on 64-bit Linux. coreutils use statx/fstatat. */
int stat(const char *p, struct stat *st) { int rc; return stat_ours(AT_FDCWD, p, st, &rc) ? rc : real_stat(p, st); }
int lstat(const char *p, struct stat *st) { int rc; return stat_ours(AT_FDCWD, p, st, &rc) ? rc : real_lstat(p, st); }
int stat64(const char *p, struct stat64 *st) { int rc; return stat_ours(AT_FDCWD, p, (struct stat *)st, &rc) ? rc : real_stat64(p, st); }
int lstat64(const char *p, struct stat64 *st) { int rc; return stat_ours(AT_FDCWD, p, (struct stat *)st, &rc) ? rc : real_lstat64(p, st); }
int access(const char *p, int mode) { int rc; return stat_ours(AT_FDCWD, p, NULL, &rc) ? rc : real_access(p, mode); }

int fstatat(int dirfd, const char *p, struct stat *st, int flags)
{
    int rc;
    return stat_ours(dirfd, p, st, &rc) ? rc : real_fstatat(dirfd, p, st, flags);
}

int statx(int dirfd, const char *p, int flags, unsigned mask, struct statx *sx)
{
    int rc;
    struct stat st;
    if (!stat_ours(dirfd, p, &st, &rc)) return real_statx(dirfd, p, flags, mask, sx);
    if (rc == 0) {
        memset(sx, 0, sizeof *sx);
        sx->stx_mask = STATX_BASIC_STATS, sx->stx_mode = st.st_mode, sx->stx_nlink = 1;
        sx->stx_uid = st.st_uid, sx->stx_gid = st.st_gid, sx->stx_blksize = 4096, sx->stx_rdev_major = 81;
        sx->stx_atime.tv_sec = sx->stx_mtime.tv_sec = sx->stx_ctime.tv_sec = st.st_mtim.tv_sec;
    }
    return rc;
}

/* ---- the picture ---- */

/* Draw frame n: 8 vertical bars shifted right by (8n mod W) pixels, and the
 * 32-bit frame number as 2 rows x 16 blocks of BxB pixels at the top left
 * (MSB first, white = 1). Chroma of a pixel pair (and of a 2x2 NV12 block)
 * comes from its left (top-left) pixel. pattern.py mirrors this exactly. */
static void render(const struct cam *c, uint8_t *dst, uint32_t n)
{
    const unsigned W = c->w, H = c->h, B = W / 256 * 16 > 16 ? W / 256 * 16 : 16;
    const unsigned shift = (unsigned)((uint64_t)n * 8 % W);
    const int nv12 = c->fourcc == V4L2_PIX_FMT_NV12;
    uint8_t ybar[W], ctop[W], cbar[W]; /* luma row; interleaved U,V row for strip / bar rows */
    uint8_t ystrip[2][W];
    for (unsigned x = 0; x < W; x++) {
        unsigned bar = (x + W - shift) % W * 8 / W;
        ybar[x] = bars[bar][0];
        unsigned lb = (x - (x & 1) + W - shift) % W * 8 / W; /* the pair's left pixel */
        cbar[x] = bars[lb][1 + (x & 1)];
        ctop[x] = x < 16 * B ? 128 : cbar[x];
        for (unsigned r = 0; r < 2; r++)
            ystrip[r][x] = x < 16 * B ? ((n >> (31 - (r * 16 + x / B))) & 1 ? Y_ONE : Y_ZERO) : ybar[x];
    }
    for (unsigned y = 0; y < H; y++) {
        const uint8_t *yr = y < 2 * B ? ystrip[y / B] : ybar, *cr = y < 2 * B ? ctop : cbar;
        if (nv12) {
            memcpy(dst + (size_t)y * W, yr, W);
            if (!(y & 1)) memcpy(dst + (size_t)W * H + (size_t)(y / 2) * W, cr, W);
        } else {
            uint8_t *row = dst + (size_t)y * W * 2;
            for (unsigned x = 0; x < W; x++) row[2 * x] = yr[x], row[2 * x + 1] = cr[x];
        }
    }
}

/* ---- ioctl ---- */

static int offered_fmt(uint32_t f)
{
    for (int i = 0; i < cfg_nfmts; i++)
        if (cfg_fmts[i] == f) return 1;
    return 0;
}

static int offered_size(unsigned w, unsigned h)
{
    for (int i = 0; i < cfg_nsizes; i++)
        if (cfg_sizes[i][0] == w && cfg_sizes[i][1] == h) return 1;
    return 0;
}

/* Like a driver: unknown formats become the default, sizes snap to the nearest offered one. */
static void adjust_fmt(struct v4l2_pix_format *p)
{
    if (!offered_fmt(p->pixelformat)) p->pixelformat = cfg_fmts[0];
    unsigned best = 0;
    long bd = -1;
    for (int i = 0; i < cfg_nsizes; i++) {
        long d = labs((long)cfg_sizes[i][0] - p->width) + labs((long)cfg_sizes[i][1] - p->height);
        if (bd < 0 || d < bd) bd = d, best = i;
    }
    unsigned w = cfg_sizes[best][0], h = cfg_sizes[best][1];
    int yuyv = p->pixelformat == V4L2_PIX_FMT_YUYV;
    memset(p, 0, sizeof *p);
    p->pixelformat = yuyv ? V4L2_PIX_FMT_YUYV : V4L2_PIX_FMT_NV12;
    p->width = w, p->height = h, p->field = V4L2_FIELD_NONE;
    p->bytesperline = yuyv ? w * 2 : w;
    p->sizeimage = frame_bytes(p->pixelformat, w, h);
    p->colorspace = V4L2_COLORSPACE_SMPTE170M;
    p->ycbcr_enc = V4L2_YCBCR_ENC_601, p->quantization = V4L2_QUANTIZATION_LIM_RANGE;
}

static void describe_buf(const struct cam *c, unsigned i, struct v4l2_buffer *b)
{
    memset(b, 0, sizeof *b);
    b->index = i, b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE, b->memory = V4L2_MEMORY_MMAP;
    b->m.offset = i * c->stride, b->length = c->sizeimage, b->field = V4L2_FIELD_NONE;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC | V4L2_BUF_FLAG_TSTAMP_SRC_EOF |
               (c->queued[i] ? V4L2_BUF_FLAG_QUEUED : 0);
}

/* Block until the next frame is due and a buffer is queued; fill it. Lock held. */
static int dqbuf(struct cam *c, struct v4l2_buffer *b)
{
    const int fd = c->fd;
    const unsigned gen = c->gen;
    for (;;) {
        if (c->fd != fd || c->gen != gen) return EBADF; /* closed by another thread */
        if (cfg_fail_after >= 0 && c->delivered >= cfg_fail_after && !c->dead && !fail_fired) {
            c->dead = 1;
            /* With an unplug file this is a one-off unplug: the camera stays away
             * until the test deletes the file, then streams without failing again.
             * Without one, every stream fails after N frames: a flapping camera. */
            if (cfg_unplug) {
                fail_fired = 1;
                int u = real_open(cfg_unplug, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                if (u >= 0) real_close(u);
            }
        }
        if (c->dead || unplugged()) { c->dead = 1; return EIO; }
        if (!c->streaming) return EINVAL;
        int nonblock = fcntl(fd, F_GETFL) & O_NONBLOCK;
        int64_t now = now_ns(), wake = now + SLICE_NS;
        if (c->qlen > 0) {
            int64_t due = due_ns(c, c->seq);
            if (now >= due) {
                /* A real camera fills queued buffers as frames arrive and drops
                 * frames when none is free: skip what it could not have kept. */
                uint32_t latest = (uint32_t)((__int128)(now - c->t0) * cfg_fps_num / cfg_fps_den / 1000000000);
                if (latest - c->seq + 1 > c->qlen) c->seq = latest - c->qlen + 1;
                unsigned i = c->q[c->qhead];
                c->qhead = (c->qhead + 1) % MAX_BUFS, c->qlen--, c->queued[i] = 0;
                render(c, c->mem + i * c->stride, c->seq);
                describe_buf(c, i, b);
                b->bytesused = c->sizeimage;
                b->sequence = c->seq;
                int64_t t = due_ns(c, c->seq);
                b->timestamp.tv_sec = t / 1000000000, b->timestamp.tv_usec = t % 1000000000 / 1000;
                c->seq++, c->delivered++;
                return 0;
            }
            if (due < wake) wake = due;
        }
        if (nonblock) return EAGAIN;
        struct timespec ts = {wake / 1000000000, wake % 1000000000};
        pthread_cond_timedwait(&cond, &lock, &ts);
    }
}

static int cam_ioctl(struct cam *c, unsigned long req, void *arg)
{
    switch (req) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *cap = arg;
        memset(cap, 0, sizeof *cap);
        strcpy((char *)cap->driver, "fake-v4l2");
        strcpy((char *)cap->card, "FrameRelay test camera");
        strcpy((char *)cap->bus_info, "platform:fake-v4l2");
        cap->version = (6 << 16) | (1 << 8); /* "kernel 6.1" */
        cap->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        cap->capabilities = cap->device_caps | V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || f->index >= (unsigned)cfg_nfmts) return EINVAL;
        uint32_t i = f->index;
        memset(f, 0, sizeof *f);
        f->index = i, f->type = V4L2_BUF_TYPE_VIDEO_CAPTURE, f->pixelformat = cfg_fmts[i];
        strcpy((char *)f->description, cfg_fmts[i] == V4L2_PIX_FMT_YUYV ? "YUYV 4:2:2" : "Y/UV 4:2:0");
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        if (!offered_fmt(s->pixel_format) || s->index >= (unsigned)cfg_nsizes) return EINVAL;
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = cfg_sizes[s->index][0], s->discrete.height = cfg_sizes[s->index][1];
        return 0;
    }
    case VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *v = arg;
        if (!offered_fmt(v->pixel_format) || !offered_size(v->width, v->height) || v->index > 0) return EINVAL;
        v->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        v->discrete.numerator = cfg_fps_den, v->discrete.denominator = cfg_fps_num;
        return 0;
    }
    case VIDIOC_G_FMT: case VIDIOC_S_FMT: case VIDIOC_TRY_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return EINVAL;
        if (req == VIDIOC_G_FMT) {
            f->fmt.pix.pixelformat = c->fourcc, f->fmt.pix.width = c->w, f->fmt.pix.height = c->h;
        }
        adjust_fmt(&f->fmt.pix);
        if (req == VIDIOC_S_FMT) {
            if (c->nbufs) return EBUSY;
            c->fourcc = f->fmt.pix.pixelformat, c->w = f->fmt.pix.width, c->h = f->fmt.pix.height;
            c->sizeimage = f->fmt.pix.sizeimage;
        }
        return 0;
    }
    case VIDIOC_G_PARM: case VIDIOC_S_PARM: { /* one frame rate: S_PARM answers with it */
        struct v4l2_streamparm *p = arg;
        if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return EINVAL;
        memset(&p->parm, 0, sizeof p->parm);
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = cfg_fps_den;
        p->parm.capture.timeperframe.denominator = cfg_fps_num;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP) return EINVAL;
        if (c->streaming) return EBUSY;
        free_bufs(c);
        r->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP, r->flags = 0;
        if (r->count == 0) return 0;
        unsigned n = r->count < 2 ? 2 : r->count > MAX_BUFS ? MAX_BUFS : r->count;
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        c->stride = (c->sizeimage + page - 1) / page * page;
        if (ftruncate(c->fd, (off_t)(c->stride * n)) < 0) return errno;
        c->mem = mmap(NULL, c->stride * n, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
        if (c->mem == MAP_FAILED) { c->mem = NULL; return ENOMEM; }
        c->nbufs = r->count = n;
        return 0;
    }
    case VIDIOC_QUERYBUF: case VIDIOC_QBUF: case VIDIOC_DQBUF: {
        struct v4l2_buffer *b = arg;
        if (b->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || b->memory != V4L2_MEMORY_MMAP) return EINVAL;
        if (req == VIDIOC_DQBUF) return dqbuf(c, b);
        if (b->index >= c->nbufs) return EINVAL;
        if (req == VIDIOC_QBUF) {
            if (c->queued[b->index]) return EINVAL;
            c->queued[b->index] = 1;
            c->q[(c->qhead + c->qlen++) % MAX_BUFS] = b->index;
            pthread_cond_broadcast(&cond);
        }
        describe_buf(c, b->index, b);
        return 0;
    }
    case VIDIOC_STREAMON: case VIDIOC_STREAMOFF: {
        if (*(int *)arg != V4L2_BUF_TYPE_VIDEO_CAPTURE) return EINVAL;
        if (req == VIDIOC_STREAMOFF) { /* all buffers come back dequeued, like vb2 */
            c->streaming = 0, c->qlen = 0;
            memset(c->queued, 0, sizeof c->queued);
            pthread_cond_broadcast(&cond);
            return 0;
        }
        if (!c->nbufs) return EINVAL;
        if (!c->streaming) c->streaming = 1, c->t0 = now_ns(), c->seq = 0, c->delivered = 0;
        return 0;
    }
    case VIDIOC_G_INPUT: *(int *)arg = 0; return 0;
    case VIDIOC_S_INPUT: return *(int *)arg == 0 ? 0 : EINVAL;
    case VIDIOC_ENUMINPUT: {
        struct v4l2_input *in = arg;
        if (in->index != 0) return EINVAL;
        memset(in, 0, sizeof *in);
        strcpy((char *)in->name, "Camera 1");
        in->type = V4L2_INPUT_TYPE_CAMERA; /* std 0: FFmpeg then skips the standards */
        return 0;
    }
    case VIDIOC_QUERYCTRL: case VIDIOC_G_CTRL: case VIDIOC_S_CTRL:
        return EINVAL; /* no controls: the end of the list straight away */
    default:
        return ENOTTY; /* G_STD/S_STD/ENUMSTD included: webcams (UVC) have no TV standards */
    }
}

static const char *ioctl_name(unsigned long req)
{
#define N(x) case VIDIOC_##x: return #x;
    switch (req) {
    N(QUERYCAP) N(ENUM_FMT) N(ENUM_FRAMESIZES) N(ENUM_FRAMEINTERVALS) N(G_FMT) N(S_FMT) N(TRY_FMT)
    N(G_PARM) N(S_PARM) N(REQBUFS) N(QUERYBUF) N(QBUF) N(DQBUF) N(STREAMON) N(STREAMOFF)
    N(G_INPUT) N(S_INPUT) N(ENUMINPUT) N(G_STD) N(S_STD) N(ENUMSTD) N(QUERYSTD) N(QUERYCTRL)
    N(G_CTRL) N(S_CTRL) N(QUERY_EXT_CTRL) N(G_EXT_CTRLS) N(S_EXT_CTRLS) N(G_SELECTION) N(CROPCAP)
    N(EXPBUF) N(CREATE_BUFS) N(SUBSCRIBE_EVENT) N(DQEVENT)
    default: { static __thread char buf[32]; snprintf(buf, sizeof buf, "0x%08lx", req); return buf; }
    }
#undef N
}

int ioctl(int fd, unsigned long req, ...)
{
    pthread_once(&once, init);
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (atomic_load(&nopen) == 0) return real_ioctl(fd, req, arg);
    pthread_mutex_lock(&lock);
    struct cam *c = find(fd);
    if (!c) { pthread_mutex_unlock(&lock); return real_ioctl(fd, req, arg); }
    int err = cam_ioctl(c, req, arg);
    pthread_mutex_unlock(&lock);
    if (cfg_debug > 1 || (cfg_debug && req != VIDIOC_QBUF && req != VIDIOC_DQBUF))
        fprintf(stderr, "fake-v4l2: fd %d ioctl %s -> %s\n", fd, ioctl_name(req), err ? strerror(err) : "ok");
    if (err) { errno = err; return -1; }
    return 0;
}

/* ---- poll / select: readable when DQBUF would not block ---- */

/* Lock held. Events for one fake fd; *wait_ns lowered to when that may change. */
static short cam_events(struct cam *c, int64_t now, int64_t *wait_ns)
{
    if (c->dead || unplugged() || !c->streaming) return POLLERR;
    if (c->qlen > 0) {
        int64_t due = due_ns(c, c->seq);
        if (now >= due) return POLLIN | POLLRDNORM;
        if (due - now < *wait_ns) *wait_ns = due - now;
    }
    return 0;
}

int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    pthread_once(&once, init);
    if (atomic_load(&nopen) == 0) return real_poll(fds, n, timeout);
    int64_t deadline = timeout < 0 ? INT64_MAX : now_ns() + timeout * 1000000LL;
    char fake[n ? n : 1];
    for (;;) {
        int64_t now = now_ns(), wait = SLICE_NS;
        int ready = 0;
        pthread_mutex_lock(&lock);
        for (nfds_t i = 0; i < n; i++) {
            struct cam *c = fds[i].fd >= 0 ? find(fds[i].fd) : NULL;
            fake[i] = c != NULL;
            if (c && (cam_events(c, now, &wait) & (fds[i].events | POLLERR))) ready = 1;
        }
        pthread_mutex_unlock(&lock);
        for (nfds_t i = 0; i < n; i++)
            if (fake[i]) fds[i].fd = ~fds[i].fd; /* negative: the real poll ignores it */
        int64_t left = deadline - now;
        int ms = ready || left <= 0 ? 0 : (int)(((left < wait ? left : wait) + 999999) / 1000000);
        int r = real_poll(fds, n, ms);
        int err = errno;
        now = now_ns(), wait = SLICE_NS;
        pthread_mutex_lock(&lock);
        for (nfds_t i = 0; i < n; i++) {
            if (!fake[i]) continue;
            fds[i].fd = ~fds[i].fd;
            struct cam *c = find(fds[i].fd);
            fds[i].revents = c ? cam_events(c, now, &wait) & (fds[i].events | POLLERR) : POLLNVAL;
            if (fds[i].revents && r >= 0) r++;
        }
        pthread_mutex_unlock(&lock);
        if (r != 0 || now >= deadline) { errno = err; return r; }
    }
}

int select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv)
{
    pthread_once(&once, init);
    if (atomic_load(&nopen) == 0) return real_select(nfds, rd, wr, ex, tv);
    /* Rare path: the set holds one of ours, so answer it all through poll(). */
    struct pollfd p[FD_SETSIZE];
    int k = 0, ours = 0;
    pthread_mutex_lock(&lock);
    for (int fd = 0; fd < nfds && fd < FD_SETSIZE; fd++) {
        short ev = (rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                   (ex && FD_ISSET(fd, ex) ? POLLPRI : 0);
        if (!ev) continue;
        ours |= find(fd) != NULL;
        p[k++] = (struct pollfd){.fd = fd, .events = ev};
    }
    pthread_mutex_unlock(&lock);
    if (!ours) return real_select(nfds, rd, wr, ex, tv);
    int r = poll(p, k, tv ? (int)(tv->tv_sec * 1000 + (tv->tv_usec + 999) / 1000) : -1);
    if (r < 0) return r;
    if (rd) FD_ZERO(rd);
    if (wr) FD_ZERO(wr);
    if (ex) FD_ZERO(ex);
    r = 0;
    for (int i = 0; i < k; i++) {
        short e = p[i].revents;
        if (rd && (e & (POLLIN | POLLERR | POLLHUP))) FD_SET(p[i].fd, rd), r++;
        if (wr && (e & (POLLOUT | POLLERR))) FD_SET(p[i].fd, wr), r++;
        if (ex && (e & POLLPRI)) FD_SET(p[i].fd, ex), r++;
    }
    return r;
}
