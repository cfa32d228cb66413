/*
 * nvmet-e2e-io: the NVMe host's workload in the end-to-end failover tests.
 *
 *   nvmet-e2e-io write DEV LOG --base BLOCK --max N --seconds S [--stop FILE] [--run ID]
 *   nvmet-e2e-io verify DEV LOG...
 *
 * write: 4 KiB O_DIRECT writes of numbered, checksummed blocks at
 * BLOCK, BLOCK+1, ... one at a time (queue depth 1, as a database log
 * would). Every acknowledged block is appended to LOG as "seq ms" (ms on
 * CLOCK_MONOTONIC since the start); a failed write as "E seq ms errno".
 * Stops after S seconds, N blocks, or when FILE exists. The summary line
 * on stdout: acked, errors, the longest gap between two acknowledged
 * writes (the I/O stall) and when it began.
 *
 * verify: reads back every block that a LOG says was acknowledged and
 * checks its number, run id and CRC; prints "verified=N lost=M" and exits
 * 1 when any block is missing or damaged.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define BLK 4096
#define MAGIC "NVMETE2E"

struct hdr {
    char magic[8];
    uint64_t seq;
    uint64_t run;
    uint64_t block;
    uint32_t crc; /* of the whole block with this field zero */
    uint32_t pad;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* The content of block SEQ of run RUN at BLOCK: a header, then bytes
 * from a xorshift stream seeded by all three (so a block written by
 * another run or at another place never verifies). */
static void fill(unsigned char *buf, uint64_t run, uint64_t seq, uint64_t block)
{
    struct hdr h = {.seq = seq, .run = run, .block = block};
    memcpy(h.magic, MAGIC, 8);
    uint64_t x = (run << 32) ^ (seq * 0x9e3779b97f4a7c15ULL) ^ block ^ 1;
    for (size_t i = sizeof h; i + 8 <= BLK; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(buf + i, &x, 8);
    }
    memcpy(buf, &h, sizeof h);
    uint32_t crc = (uint32_t)crc32(0L, buf, BLK);
    memcpy(buf + offsetof(struct hdr, crc), &crc, sizeof crc);
}

static int check(const unsigned char *got, uint64_t run, uint64_t seq, uint64_t block)
{
    static unsigned char want[BLK];
    fill(want, run, seq, block);
    return memcmp(got, want, BLK) == 0 ? 0 : -1;
}

static int usage(void)
{
    fprintf(stderr,
            "usage: nvmet-e2e-io write DEV LOG --base BLOCK --max N --seconds S "
            "[--stop FILE] [--run ID]\n"
            "       nvmet-e2e-io verify DEV LOG...\n");
    return 2;
}

/* The first line of a log: "# run RUN base BASE". */
static int do_write(int argc, char **argv)
{
    if (argc < 4) {
        return usage();
    }
    const char *dev = argv[2], *logp = argv[3], *stop = NULL;
    uint64_t base = 0, max = 16384, run = (uint64_t)time(NULL);
    double seconds = 10;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--base") == 0) {
            base = strtoull(argv[i + 1], NULL, 0);
        } else if (strcmp(argv[i], "--max") == 0) {
            max = strtoull(argv[i + 1], NULL, 0);
        } else if (strcmp(argv[i], "--seconds") == 0) {
            seconds = strtod(argv[i + 1], NULL);
        } else if (strcmp(argv[i], "--stop") == 0) {
            stop = argv[i + 1];
        } else if (strcmp(argv[i], "--run") == 0) {
            run = strtoull(argv[i + 1], NULL, 0);
        } else {
            return usage();
        }
    }
    int fd = open(dev, O_WRONLY | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "nvmet-e2e-io: %s: %s\n", dev, strerror(errno));
        return 1;
    }
    FILE *log = fopen(logp, "w");
    if (log == NULL) {
        fprintf(stderr, "nvmet-e2e-io: %s: %s\n", logp, strerror(errno));
        close(fd);
        return 1;
    }
    unsigned char *buf;
    if (posix_memalign((void **)&buf, BLK, BLK) != 0) {
        fclose(log);
        close(fd);
        return 1;
    }
    fprintf(log, "# run %" PRIu64 " base %" PRIu64 "\n", run, base);
    double t0 = now_ms(), last = 0, gap = 0, gap_at = 0, flushed = 0;
    uint64_t acked = 0, errors = 0;
    int first_errno = 0;
    for (uint64_t seq = 0; seq < max; seq++) {
        double t = now_ms() - t0;
        if (t > seconds * 1e3 || (stop != NULL && access(stop, F_OK) == 0)) {
            break;
        }
        fill(buf, run, seq, base + seq);
        ssize_t n = pwrite(fd, buf, BLK, (off_t)((base + seq) * BLK));
        t = now_ms() - t0;
        if (n != BLK) {
            if (errors++ == 0) {
                first_errno = n < 0 ? errno : EIO;
            }
            fprintf(log, "E %" PRIu64 " %.1f %d\n", seq, t, n < 0 ? errno : EIO);
            continue;
        }
        if (acked > 0 && t - last > gap) {
            gap = t - last;
            gap_at = last;
        }
        acked++;
        last = t;
        fprintf(log, "%" PRIu64 " %.1f\n", seq, t);
        if (t - flushed > 500) {
            fflush(log);
            flushed = t;
        }
    }
    fclose(log);
    close(fd);
    free(buf);
    printf("acked=%" PRIu64 " errors=%" PRIu64 " stall_ms=%.0f stall_at_ms=%.0f run_ms=%.0f%s%s\n",
           acked, errors, gap, gap_at, last, errors ? " first_error=" : "",
           errors ? strerror(first_errno) : "");
    return 0;
}

/* Verify one log; adds to *ok and *lost. */
static int verify_log(int fd, const char *logp, uint64_t *ok, uint64_t *lost)
{
    FILE *log = fopen(logp, "r");
    if (log == NULL) {
        fprintf(stderr, "nvmet-e2e-io: %s: %s\n", logp, strerror(errno));
        return -1;
    }
    uint64_t run = 0, base = 0;
    if (fscanf(log, "# run %" SCNu64 " base %" SCNu64 "\n", &run, &base) != 2) {
        fprintf(stderr, "nvmet-e2e-io: %s: no header\n", logp);
        fclose(log);
        return -1;
    }
    enum { CHUNK = 256 };
    unsigned char *buf;
    if (posix_memalign((void **)&buf, BLK, (size_t)BLK * CHUNK) != 0) {
        fclose(log);
        return -1;
    }
    uint64_t have = UINT64_MAX; /* first seq held in buf */
    char line[128];
    int rv = 0;
    while (fgets(line, sizeof line, log) != NULL) {
        uint64_t seq;
        if (line[0] == 'E' || sscanf(line, "%" SCNu64, &seq) != 1) {
            continue;
        }
        if (have == UINT64_MAX || seq < have || seq >= have + CHUNK) {
            have = seq;
            ssize_t n = pread(fd, buf, (size_t)BLK * CHUNK, (off_t)((base + seq) * BLK));
            if (n < BLK) {
                fprintf(stderr, "nvmet-e2e-io: read at block %" PRIu64 ": %s\n", base + seq,
                        n < 0 ? strerror(errno) : "short read");
                rv = -1;
                break;
            }
        }
        if (check(buf + (seq - have) * BLK, run, seq, base + seq) == 0) {
            (*ok)++;
        } else {
            if (*lost < 5) {
                fprintf(stderr,
                        "nvmet-e2e-io: %s: block %" PRIu64 " (seq %" PRIu64
                        ") does not hold what was acknowledged\n",
                        logp, base + seq, seq);
            }
            (*lost)++;
        }
    }
    free(buf);
    fclose(log);
    return rv;
}

static int do_verify(int argc, char **argv)
{
    if (argc < 4) {
        return usage();
    }
    int fd = open(argv[2], O_RDONLY | O_DIRECT);
    if (fd < 0) {
        fprintf(stderr, "nvmet-e2e-io: %s: %s\n", argv[2], strerror(errno));
        return 1;
    }
    uint64_t ok = 0, lost = 0;
    int rv = 0;
    for (int i = 3; i < argc; i++) {
        if (verify_log(fd, argv[i], &ok, &lost) < 0) {
            rv = 1;
        }
    }
    close(fd);
    printf("verified=%" PRIu64 " lost=%" PRIu64 "\n", ok, lost);
    return rv != 0 || lost != 0 || ok == 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "write") == 0) {
        return do_write(argc, argv);
    }
    if (argc >= 2 && strcmp(argv[1], "verify") == 0) {
        return do_verify(argc, argv);
    }
    return usage();
}
