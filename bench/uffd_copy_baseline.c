/*
 * The comparison point of faultline's paging benchmark (issue 5): a plain C VMM whose guest
 * touches one word of every page of its vCPU's slice, with the slices demand-paged through
 * userfaultfd MISSING by one handler thread per vCPU that sleeps in poll() and serves each fault
 * with one UFFDIO_COPY of one zero page. Mode "first-touch" runs the same guest on ordinary
 * anonymous memory (the ceiling). Built and run by `faultline bench paging --c-baseline`, which
 * passes the boot state; it knows nothing of faultline beyond these arguments.
 *
 * usage: uffd_copy_baseline MODE BOOTFILE MEMSIZE VCPUS ENTRY CR0 CR3 CR4 EFER GDTBASE GDTLIMIT
 *                           TSSBASE STACKTOP STACKSIZE REGIONSTART SLICEBYTES
 *   MODE: uffd | first-touch. BOOTFILE: guest RAM [0, its size): boot tables and image.
 * Output: one JSON object on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PORT_DONE 0xf4
#define PAGE 4096UL
#define MAX_VCPUS 16

static int vmfd, vcpus, use_uffd;
static uint64_t entry, cr0, cr3, cr4, efer, gdtbase, gdtlimit, tssbase, stacktop, stacksize, region, slice;
static size_t runsize;
static uint8_t *ram;
static volatile int stop_handlers;

struct vcpu_job { int index; double seconds; int done_code; long faults; };
struct handler_job { int uffd; long served; };

static void die(const char *what) { fprintf(stderr, "uffd_copy_baseline: %s: %s\n", what, strerror(errno)); exit(2); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void seg(struct kvm_segment *s, uint64_t base, uint32_t limit, uint16_t sel, uint8_t type, int db, int sflag, int l, int g) {
    memset(s, 0, sizeof *s);
    s->base = base; s->limit = limit; s->selector = sel; s->type = type; s->present = 1;
    s->db = db; s->s = sflag; s->l = l; s->g = g;
}

static void *handler(void *arg) {
    struct handler_job *job = arg;
    static __thread uint8_t *zero;
    zero = aligned_alloc(PAGE, PAGE);
    memset(zero, 0, PAGE);
    struct pollfd p = {.fd = job->uffd, .events = POLLIN};
    while (!stop_handlers) {
        int r = poll(&p, 1, 100);
        if (r <= 0) continue;
        struct uffd_msg msg;
        ssize_t n = read(job->uffd, &msg, sizeof msg);
        if (n != sizeof msg) continue;
        if (msg.event != UFFD_EVENT_PAGEFAULT) continue;
        struct uffdio_copy c = {.dst = msg.arg.pagefault.address & ~(PAGE - 1), .src = (uint64_t)zero, .len = PAGE, .mode = 0};
        if (ioctl(job->uffd, UFFDIO_COPY, &c) < 0) {
            /* errno is looked at only after a failure: a stale EEXIST would add a WAKE to every later fault */
            if (errno != EEXIST) die("UFFDIO_COPY");
            struct uffdio_range w = {.start = c.dst, .len = PAGE};
            ioctl(job->uffd, UFFDIO_WAKE, &w);
        }
        job->served++;
    }
    return NULL;
}

static void *run_vcpu(void *arg) {
    struct vcpu_job *job = arg;
    int v = job->index;
    int fd = ioctl(vmfd, KVM_CREATE_VCPU, v);
    if (fd < 0) die("KVM_CREATE_VCPU");
    struct kvm_run *run = mmap(NULL, runsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (run == MAP_FAILED) die("mmap kvm_run");
    struct kvm_sregs sr;
    if (ioctl(fd, KVM_GET_SREGS, &sr) < 0) die("KVM_GET_SREGS");
    seg(&sr.cs, 0, 0xffffffff, 0x08, 0xb, 0, 1, 1, 1);
    seg(&sr.ds, 0, 0xffffffff, 0x10, 0x3, 1, 1, 0, 1);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    seg(&sr.tr, tssbase, 103, 0x18, 0xb, 0, 0, 0, 0);
    memset(&sr.ldt, 0, sizeof sr.ldt);
    sr.ldt.type = 2; sr.ldt.unusable = 1;
    sr.gdt.base = gdtbase; sr.gdt.limit = gdtlimit;
    sr.idt.base = 0; sr.idt.limit = 0;
    sr.cr0 = cr0; sr.cr3 = cr3; sr.cr4 = cr4; sr.efer = efer;
    if (ioctl(fd, KVM_SET_SREGS, &sr) < 0) die("KVM_SET_SREGS");
    struct kvm_regs r;
    memset(&r, 0, sizeof r);
    r.rip = entry; r.rflags = 2; r.rsp = stacktop - v * stacksize; r.rdi = v; r.rsi = vcpus;
    if (ioctl(fd, KVM_SET_REGS, &r) < 0) die("KVM_SET_REGS");
    double t0 = now();
    job->done_code = -1;
    for (;;) {
        if (ioctl(fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            die("KVM_RUN");
        }
        if (run->exit_reason == KVM_EXIT_IO && run->io.direction == KVM_EXIT_IO_OUT) {
            if (run->io.port == PORT_DONE) {
                uint32_t val = 0;
                memcpy(&val, (uint8_t *)run + run->io.data_offset, run->io.size);
                job->done_code = (int)val;
                break;
            }
            continue;
        }
        if (run->exit_reason == KVM_EXIT_IO) { memset((uint8_t *)run + run->io.data_offset, 0, run->io.size * run->io.count); continue; }
        fprintf(stderr, "uffd_copy_baseline: vCPU %d: unexpected exit %u\n", v, run->exit_reason);
        break;
    }
    job->seconds = now() - t0;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 17) { fprintf(stderr, "uffd_copy_baseline: expected 16 arguments, got %d\n", argc - 1); return 2; }
    use_uffd = strcmp(argv[1], "uffd") == 0;
    if (!use_uffd && strcmp(argv[1], "first-touch") != 0) { fprintf(stderr, "uffd_copy_baseline: MODE is uffd or first-touch\n"); return 2; }
    const char *bootfile = argv[2];
    uint64_t mem = strtoull(argv[3], NULL, 0);
    vcpus = atoi(argv[4]);
    if (vcpus < 1 || vcpus > MAX_VCPUS) { fprintf(stderr, "uffd_copy_baseline: 1..%d vCPUs\n", MAX_VCPUS); return 2; }
    entry = strtoull(argv[5], NULL, 0); cr0 = strtoull(argv[6], NULL, 0); cr3 = strtoull(argv[7], NULL, 0);
    cr4 = strtoull(argv[8], NULL, 0); efer = strtoull(argv[9], NULL, 0); gdtbase = strtoull(argv[10], NULL, 0);
    gdtlimit = strtoull(argv[11], NULL, 0); tssbase = strtoull(argv[12], NULL, 0); stacktop = strtoull(argv[13], NULL, 0);
    stacksize = strtoull(argv[14], NULL, 0); region = strtoull(argv[15], NULL, 0); slice = strtoull(argv[16], NULL, 0);

    ram = mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (ram == MAP_FAILED) die("mmap RAM");
    int bfd = open(bootfile, O_RDONLY);
    if (bfd < 0) die("open BOOTFILE");
    struct stat st;
    if (fstat(bfd, &st) < 0) die("fstat BOOTFILE");
    if ((uint64_t)st.st_size > region) { fprintf(stderr, "uffd_copy_baseline: BOOTFILE overlaps the region\n"); return 2; }
    for (off_t off = 0; off < st.st_size;) {
        ssize_t n = pread(bfd, ram + off, st.st_size - off, off);
        if (n <= 0) die("read BOOTFILE");
        off += n;
    }
    close(bfd);

    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm");
    vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vmfd < 0) die("KVM_CREATE_VM");
    if (ioctl(vmfd, KVM_SET_TSS_ADDR, 0xfffbd000UL) < 0) die("KVM_SET_TSS_ADDR");
    runsize = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_userspace_memory_region reg = {.slot = 0, .guest_phys_addr = 0, .memory_size = mem, .userspace_addr = (uint64_t)ram};
    if (ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &reg) < 0) die("KVM_SET_USER_MEMORY_REGION");

    struct handler_job hjobs[MAX_VCPUS];
    pthread_t ht[MAX_VCPUS];
    memset(hjobs, 0, sizeof hjobs);
    if (use_uffd) {
        for (int i = 0; i < vcpus; i++) {
            int u = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
            if (u < 0) die("userfaultfd");
            struct uffdio_api api = {.api = UFFD_API, .features = 0};
            if (ioctl(u, UFFDIO_API, &api) < 0) die("UFFDIO_API");
            struct uffdio_register rg = {.range = {.start = (uint64_t)ram + region + i * slice, .len = slice}, .mode = UFFDIO_REGISTER_MODE_MISSING};
            if (ioctl(u, UFFDIO_REGISTER, &rg) < 0) die("UFFDIO_REGISTER");
            hjobs[i].uffd = u;
            pthread_create(&ht[i], NULL, handler, &hjobs[i]);
        }
    }
    struct vcpu_job jobs[MAX_VCPUS];
    pthread_t t[MAX_VCPUS];
    memset(jobs, 0, sizeof jobs);
    double t0 = now();
    for (int i = 0; i < vcpus; i++) { jobs[i].index = i; pthread_create(&t[i], NULL, run_vcpu, &jobs[i]); }
    for (int i = 0; i < vcpus; i++) pthread_join(t[i], NULL);
    double wall = now() - t0;
    stop_handlers = 1;
    if (use_uffd) for (int i = 0; i < vcpus; i++) pthread_join(ht[i], NULL);

    uint64_t pages_per_vcpu = slice / PAGE;
    double slowest = 0;
    for (int i = 0; i < vcpus; i++) if (jobs[i].seconds > slowest) slowest = jobs[i].seconds;
    printf("{\"mode\":\"%s\",\"vcpus\":%d,\"pages\":%llu,\"seconds\":%.6f,\"wall_seconds\":%.6f,\"pages_per_sec\":%.0f,\"per_vcpu\":[",
           argv[1], vcpus, (unsigned long long)(pages_per_vcpu * vcpus), slowest, wall, pages_per_vcpu * vcpus / slowest);
    for (int i = 0; i < vcpus; i++) {
        printf("%s{\"vcpu\":%d,\"done_code\":%d,\"seconds\":%.6f,\"pages_per_sec\":%.0f,\"faults_served\":%ld}", i ? "," : "", i,
               jobs[i].done_code, jobs[i].seconds, pages_per_vcpu / jobs[i].seconds, hjobs[i].served);
    }
    printf("]}\n");
    for (int i = 0; i < vcpus; i++) if (jobs[i].done_code != 0) return 1;
    return 0;
}
