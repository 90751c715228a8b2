/*
 * Test-only: runs a prepared guest RAM file on bare KVM, so guest-image tests can check what
 * workloads and compiled C guests really do before faultline's own backends exist. Not part of
 * faultline: it knows only the boot protocol's entry state, passed in by the Java test.
 *
 * usage: kvm-run RAMFILE MEMSIZE VCPUS ENTRY CR0 CR3 CR4 EFER GDTBASE GDTLIMIT TSSBASE STACKTOP STACKSIZE
 * RAMFILE is mapped shared: the guest's final memory is left in it.
 * Output, per vCPU in index order (numbers in hex):
 *   exit V io-out PORT SIZE VALUE | exit V io-in PORT SIZE | exit V hlt | exit V shutdown | exit V other REASON
 *   regs V rax rbx rcx rdx rsi rdi rsp rbp r8 ... r15 rip rflags
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PORT_DONE 0xf4
#define MAX_EXITS 100000

static int vmfd, vcpus;
static uint64_t entry, cr0, cr3, cr4, efer, gdtbase, gdtlimit, tssbase, stacktop, stacksize;
static size_t runsize;

struct out { char *buf; size_t len, cap; };

static void outf(struct out *o, const char *fmt, ...) {
    va_list ap;
    char line[512];
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->cap + n + 1) * 2;
        o->buf = realloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, line, n + 1);
    o->len += n;
}

static void die(const char *what) { fprintf(stderr, "kvm-run: %s: %s\n", what, strerror(errno)); exit(2); }

static void seg(struct kvm_segment *s, uint64_t base, uint32_t limit, uint16_t sel, uint8_t type, int db, int sflag, int l, int g) {
    memset(s, 0, sizeof *s);
    s->base = base; s->limit = limit; s->selector = sel; s->type = type; s->present = 1;
    s->db = db; s->s = sflag; s->l = l; s->g = g;
}

struct job { int index; struct out out; };

static void *run_vcpu(void *arg) {
    struct job *job = arg;
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
    for (int n = 0; n < MAX_EXITS; n++) {
        if (ioctl(fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            outf(&job->out, "exit %x error %d\n", v, errno);
            break;
        }
        int stop = 1;
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            uint8_t *p = (uint8_t *)run + run->io.data_offset;
            uint64_t val = 0;
            if (run->io.direction == KVM_EXIT_IO_OUT) {
                memcpy(&val, p, run->io.size);
                outf(&job->out, "exit %x io-out %x %x %llx\n", v, run->io.port, run->io.size, (unsigned long long)val);
                stop = run->io.port == PORT_DONE;
            } else {
                memset(p, 0, run->io.size * run->io.count);
                outf(&job->out, "exit %x io-in %x %x\n", v, run->io.port, run->io.size);
                stop = 0;
            }
            break;
        }
        case KVM_EXIT_HLT: outf(&job->out, "exit %x hlt\n", v); break;
        case KVM_EXIT_SHUTDOWN: outf(&job->out, "exit %x shutdown\n", v); break;
        default: outf(&job->out, "exit %x other %x\n", v, run->exit_reason); break;
        }
        if (stop) break;
    }
    if (ioctl(fd, KVM_GET_REGS, &r) < 0) die("KVM_GET_REGS");
    outf(&job->out, "regs %x %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx %llx\n", v,
         r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rsp, r.rbp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14, r.r15,
         r.rip, r.rflags);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 14) { fprintf(stderr, "kvm-run: expected 13 arguments, got %d\n", argc - 1); return 2; }
    const char *ramfile = argv[1];
    uint64_t mem = strtoull(argv[2], NULL, 0);
    vcpus = atoi(argv[3]);
    entry = strtoull(argv[4], NULL, 0); cr0 = strtoull(argv[5], NULL, 0); cr3 = strtoull(argv[6], NULL, 0);
    cr4 = strtoull(argv[7], NULL, 0); efer = strtoull(argv[8], NULL, 0); gdtbase = strtoull(argv[9], NULL, 0);
    gdtlimit = strtoull(argv[10], NULL, 0); tssbase = strtoull(argv[11], NULL, 0); stacktop = strtoull(argv[12], NULL, 0);
    stacksize = strtoull(argv[13], NULL, 0);
    int ramfd = open(ramfile, O_RDWR);
    if (ramfd < 0) die("open RAM file");
    void *ram = mmap(NULL, mem, PROT_READ | PROT_WRITE, MAP_SHARED, ramfd, 0);
    if (ram == MAP_FAILED) die("mmap RAM file");
    int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) die("open /dev/kvm");
    vmfd = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vmfd < 0) die("KVM_CREATE_VM");
    runsize = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    struct kvm_userspace_memory_region region = {.slot = 0, .guest_phys_addr = 0, .memory_size = mem,
                                                  .userspace_addr = (uint64_t)ram};
    if (ioctl(vmfd, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
    pthread_t t[64];
    struct job jobs[64];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < vcpus; i++) {
        jobs[i].index = i;
        pthread_create(&t[i], NULL, run_vcpu, &jobs[i]);
    }
    for (int i = 0; i < vcpus; i++) {
        pthread_join(t[i], NULL);
        if (jobs[i].out.buf) fputs(jobs[i].out.buf, stdout);
    }
    msync(ram, mem, MS_SYNC);
    return 0;
}
