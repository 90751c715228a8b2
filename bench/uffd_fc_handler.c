/*
 * The comparison point of `faultline bench handler` (issue 16): a page-fault handler for the
 * Firecracker protocol written the way Firecracker's example handlers are
 * (src/firecracker/examples/uffd: uffd_utils.rs and on_demand_handler.rs): it accepts connections on
 * a Unix socket; for each (one thread per VM) it receives the JSON array of guest regions with the
 * userfaultfd (one recvmsg, 1024-byte buffer, SCM_RIGHTS), maps the memory file MAP_PRIVATE |
 * MAP_POPULATE, then loops: poll() the userfaultfd, read ONE uffd_msg, serve a page fault with ONE
 * UFFDIO_COPY of one page from the mapping (EEXIST: wake), remember REMOVE ranges and answer later
 * faults there with UFFDIO_ZEROPAGE, and on EAGAIN read pending events before retrying. It knows
 * nothing of faultline beyond the protocol.
 *
 * usage: uffd_fc_handler SOCKET MEMFILE
 * Runs until killed; one line per VM on stderr when its socket hangs up.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PAGE 4096UL
#define MAX_REGIONS 64
#define MAX_REMOVED 4096

static uint8_t *file_map;
static size_t file_size;

struct region { uint64_t base, size, offset; };
struct vm {
    int sock, uffd, nregions, nremoved;
    struct region regions[MAX_REGIONS];
    uint64_t removed_start[MAX_REMOVED], removed_end[MAX_REMOVED];
    long served;
};

static void die(const char *what) { fprintf(stderr, "uffd_fc_handler: %s: %s\n", what, strerror(errno)); exit(2); }

/* The numbers after each "key": in order; enough for the JSON Firecracker writes (no nesting, no strings as values). */
static int parse(const char *json, struct vm *vm) {
    const char *p = json;
    int n = 0;
    while ((p = strchr(p, '{')) != NULL && n < MAX_REGIONS) {
        const char *end = strchr(p, '}');
        if (!end) return -1;
        struct region r = {0, 0, 0};
        const char *k;
        if ((k = strstr(p, "\"base_host_virt_addr\":")) && k < end) r.base = strtoull(k + 22, NULL, 10);
        if ((k = strstr(p, "\"size\":")) && k < end) r.size = strtoull(k + 7, NULL, 10);
        if ((k = strstr(p, "\"offset\":")) && k < end) r.offset = strtoull(k + 9, NULL, 10);
        vm->regions[n++] = r;
        p = end;
    }
    vm->nregions = n;
    return n;
}

static int is_removed(struct vm *vm, uint64_t addr) {
    for (int i = 0; i < vm->nremoved; i++) if (addr >= vm->removed_start[i] && addr < vm->removed_end[i]) return 1;
    return 0;
}

/* Serves one fault; returns 0, or -EAGAIN to retry after reading events. */
static int serve(struct vm *vm, uint64_t addr) {
    addr &= ~(PAGE - 1);
    if (is_removed(vm, addr)) {
        struct uffdio_zeropage z = {.range = {.start = addr, .len = PAGE}, .mode = 0};
        if (ioctl(vm->uffd, UFFDIO_ZEROPAGE, &z) < 0) {
            if (errno == EAGAIN) return -EAGAIN;
            if (errno != EEXIST) die("UFFDIO_ZEROPAGE");
        }
        vm->served++;
        return 0;
    }
    for (int i = 0; i < vm->nregions; i++) {
        struct region *r = &vm->regions[i];
        if (addr < r->base || addr >= r->base + r->size) continue;
        uint64_t off = r->offset + (addr - r->base);
        if (off + PAGE > file_size) { fprintf(stderr, "uffd_fc_handler: offset past the memory file\n"); exit(2); }
        struct uffdio_copy c = {.dst = addr, .src = (uint64_t)(file_map + off), .len = PAGE, .mode = 0};
        if (ioctl(vm->uffd, UFFDIO_COPY, &c) < 0) {
            if (errno == EAGAIN) return -EAGAIN;
            if (errno == ENOENT || errno == ESRCH) return 0;   /* range or process gone */
            if (errno != EEXIST) die("UFFDIO_COPY");
            struct uffdio_range w = {.start = addr, .len = PAGE};
            ioctl(vm->uffd, UFFDIO_WAKE, &w);
        }
        vm->served++;
        return 0;
    }
    fprintf(stderr, "uffd_fc_handler: fault at 0x%lx outside every region\n", (unsigned long)addr);
    exit(2);
}

static void handle(struct vm *vm, struct uffd_msg *m, uint64_t *retry, int *nretry) {
    if (m->event == UFFD_EVENT_REMOVE) {
        if (vm->nremoved < MAX_REMOVED) {
            vm->removed_start[vm->nremoved] = m->arg.remove.start;
            vm->removed_end[vm->nremoved++] = m->arg.remove.end;
        }
    } else if (m->event == UFFD_EVENT_PAGEFAULT) {
        if (serve(vm, m->arg.pagefault.address) == -EAGAIN) retry[(*nretry)++] = m->arg.pagefault.address;
    }
}

static void *run_vm(void *arg) {
    struct vm *vm = arg;
    char buf[1024];
    int fd = -1;
    for (int attempt = 0; attempt < 5 && fd < 0; attempt++) {   /* as uffd_utils.rs: retry while no descriptor came */
        struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
        char ctl[CMSG_SPACE(sizeof(int))];
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl, .msg_controllen = sizeof ctl};
        ssize_t n = recvmsg(vm->sock, &msg, 0);
        if (n <= 0) { close(vm->sock); free(vm); return NULL; }
        buf[n] = 0;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (c && c->cmsg_type == SCM_RIGHTS) memcpy(&fd, CMSG_DATA(c), sizeof fd);
    }
    if (fd < 0 || parse(buf, vm) <= 0) { fprintf(stderr, "uffd_fc_handler: bad handshake\n"); close(vm->sock); free(vm); return NULL; }
    vm->uffd = fd;
    uint64_t retry[64];
    int nretry = 0;
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = vm->sock, .events = POLLIN}};
    for (;;) {
        int r = poll(p, 2, nretry ? 1 : -1);
        if (r < 0 && errno != EINTR) die("poll");
        if (p[1].revents) break;   /* the VMM hung up (v1.12+ keeps the socket open until it ends) */
        if (p[0].revents & POLLIN) {
            struct uffd_msg m;
            if (read(fd, &m, sizeof m) == sizeof m) handle(vm, &m, retry, &nretry);
        }
        if (nretry) {   /* EAGAIN: a REMOVE is pending; read every pending event, then retry */
            struct uffd_msg m;
            while (read(fd, &m, sizeof m) == sizeof m) handle(vm, &m, retry, &nretry);
            int n = nretry;
            uint64_t again[64];
            memcpy(again, retry, sizeof(uint64_t) * n);
            nretry = 0;
            for (int i = 0; i < n; i++) if (serve(vm, again[i]) == -EAGAIN) retry[nretry++] = again[i];
        }
    }
    fprintf(stderr, "uffd_fc_handler: VM ended, %ld faults served\n", vm->served);
    close(fd);
    close(vm->sock);
    free(vm);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: uffd_fc_handler SOCKET MEMFILE\n"); return 2; }
    int mfd = open(argv[2], O_RDONLY | O_CLOEXEC);
    if (mfd < 0) die("open MEMFILE");
    struct stat st;
    if (fstat(mfd, &st) < 0) die("fstat MEMFILE");
    file_size = st.st_size;
    file_map = mmap(NULL, file_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, mfd, 0);
    if (file_map == MAP_FAILED) die("mmap MEMFILE");
    int ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ls < 0) die("socket");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(ls, 64) < 0) die("listen");
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        int c = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) { if (errno == EINTR) continue; die("accept4"); }
        struct vm *vm = calloc(1, sizeof *vm);
        vm->sock = c;
        pthread_t t;
        if (pthread_create(&t, NULL, run_vm, vm) != 0) die("pthread_create");
        pthread_detach(t);
    }
}
