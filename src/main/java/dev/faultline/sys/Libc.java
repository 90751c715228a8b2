package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.lang.invoke.VarHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.BitSet;
import java.util.stream.IntStream;

/**
 * Downcalls into the C library. Every call that can fail captures errno into a segment owned by the
 * calling thread: either one passed explicitly (a vCPU keeps its own, so its run loop does no
 * thread-local lookup), or the calling thread's own from {@link #errnoSegment()}. A capture segment is
 * never shared between threads.
 *
 * <p>Methods return the raw C result; the {@code check*} helpers turn -1 into {@link ErrnoException}.
 */
public final class Libc {
    private Libc() {}

    static final Linker LINKER = Linker.nativeLinker();
    static final SymbolLookup LIBC = LINKER.defaultLookup();
    static final StructLayout CAPTURE_LAYOUT = Linker.Option.captureStateLayout();
    static final VarHandle ERRNO = CAPTURE_LAYOUT.varHandle(MemoryLayout.PathElement.groupElement("errno"));
    private static final Linker.Option CAPTURE = Linker.Option.captureCallState("errno");

    private static final ThreadLocal<MemorySegment> THREAD_CAPTURE =
            ThreadLocal.withInitial(Libc::newErrnoSegment);

    public static final int PROT_NONE = 0, PROT_READ = 1, PROT_WRITE = 2, PROT_EXEC = 4;
    public static final int MAP_SHARED = 0x01, MAP_PRIVATE = 0x02, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20,
            MAP_NORESERVE = 0x4000, MAP_POPULATE = 0x8000;
    public static final int MADV_DONTNEED = 4, MADV_REMOVE = 9, MADV_HWPOISON = 100;
    public static final int MFD_CLOEXEC = 1;
    public static final int O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2, O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    public static final long MAP_FAILED = -1L;

    private static final ValueLayout.OfInt C_INT = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong C_LONG = ValueLayout.JAVA_LONG;

    private static MethodHandle link(String name, FunctionDescriptor fd, Linker.Option... options) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError(name)), fd, options);
    }

    // Every system call goes through ONE downcall: glibc's syscall(2) with the number and six long
    // arguments (pointers as addresses), errno captured. The linker generates a stub class per
    // distinct function shape: in a cold JVM (JDK 25, with the AOT cache, this machine) linking 12
    // distinct shapes took 89-108 ms, 12 handles of one shape 35-51 ms, and a restore's path used 13
    // shapes before. Unused arguments are passed as 0, which the kernel ignores. Pointer arguments lose the linker's check that a segment is native and alive
    // during the call: addr() checks the first, and every caller here keeps its segments alive
    // across the call (an arena it owns, or a field).
    private static final class Sys {
        static final MethodHandle H = link("syscall", FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG, C_LONG),
                CAPTURE, Linker.Option.firstVariadicArg(1));
    }

    // Only what is not a system call links a function of its own, when first used (tests only):
    private static final class FnMemcpy { static final MethodHandle H = link("memcpy", FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_LONG)); }

    /** x86-64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
    static final long SYS_READ = 0, SYS_WRITE = 1, SYS_CLOSE = 3, SYS_POLL = 7, SYS_MMAP = 9, SYS_MPROTECT = 10, SYS_MUNMAP = 11, SYS_MREMAP = 25,
            SYS_RT_SIGACTION = 13, SYS_RT_SIGPROCMASK = 14, SYS_IOCTL = 16, SYS_PREAD64 = 17, SYS_MADVISE = 28, SYS_GETPID = 39, SYS_FTRUNCATE = 77,
            SYS_RT_SIGTIMEDWAIT = 128, SYS_SETPRIORITY = 141, SYS_SCHED_SETSCHEDULER = 144, SYS_GETTID = 186,
            SYS_SCHED_SETAFFINITY = 203, SYS_TGKILL = 234, SYS_OPENAT = 257, SYS_FALLOCATE = 285, SYS_EVENTFD2 = 290,
            SYS_PROCESS_VM_READV = 310, SYS_PROCESS_VM_WRITEV = 311, SYS_MEMFD_CREATE = 319;
    private static final long AT_FDCWD = -100;

    /** syscall(2): the raw result, or -1 with errno in {@code capture}. */
    static long sys(MemorySegment capture, long nr, long a, long b, long c, long d, long e, long f) {
        try { return (long) Sys.H.invokeExact(capture, nr, a, b, c, d, e, f); } catch (Throwable t) { throw rethrow(t); }
    }

    static long sys(MemorySegment capture, long nr, long a, long b, long c) {
        return sys(capture, nr, a, b, c, 0, 0, 0);
    }

    /** The address of a native segment, for a pointer argument; a heap segment has none. */
    static long addr(MemorySegment s) {
        if (!s.isNative()) throw new IllegalArgumentException("a system call needs native memory, not a heap segment");
        return s.address();
    }

    public static final short POLLIN = 0x1, POLLERR = 0x8, POLLHUP = 0x10, POLLNVAL = 0x20;
    public static final int EFD_CLOEXEC = 0x80000, EFD_NONBLOCK = 0x800;
    public static final int SIG_BLOCK = 0, SIG_UNBLOCK = 1, SIG_SETMASK = 2;
    /** glibc's user-space sigset_t is 1024 bits; the kernel's (and KVM_SET_SIGNAL_MASK's) is 64. */
    public static final long SIGSET_SIZE = 128, KERNEL_SIGSET_SIZE = 8;
    /** {@code SIG_DFL} and {@code SIG_IGN} as handler addresses. */
    public static final long SIG_DFL = 0, SIG_IGN = 1;

    /** A fresh errno capture segment for one thread (for example one vCPU). */
    public static MemorySegment newErrnoSegment() {
        return Arena.ofAuto().allocate(CAPTURE_LAYOUT);
    }

    /** The calling thread's own capture segment. */
    public static MemorySegment errnoSegment() {
        return THREAD_CAPTURE.get();
    }

    /** errno recorded in {@code capture} by the last capturing call made with it. */
    public static int errno(MemorySegment capture) {
        return (int) ERRNO.get(capture, 0L);
    }

    /** errno recorded by the calling thread's last capturing call made without an explicit segment. */
    public static int lastErrno() {
        return errno(errnoSegment());
    }

    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }

    public static int open(String path, int flags, int mode) {
        try (Arena a = Arena.ofConfined()) {
            return (int) sys(errnoSegment(), SYS_OPENAT, AT_FDCWD, a.allocateFrom(path).address(), flags, mode, 0, 0);
        }
    }

    public static int close(int fd) {
        return (int) sys(errnoSegment(), SYS_CLOSE, fd, 0, 0);
    }

    public static long read(MemorySegment capture, int fd, MemorySegment buf, long count) {
        return sys(capture, SYS_READ, fd, addr(buf), count);
    }

    public static long write(MemorySegment capture, int fd, MemorySegment buf, long count) {
        return sys(capture, SYS_WRITE, fd, addr(buf), count);
    }

    /**
     * pread(2) of {@code count} bytes at file {@code offset} into native memory at {@code address}, errno
     * into the calling thread's capture segment. Allocation-free (the address is a plain long).
     */
    public static long pread(int fd, long address, long count, long offset) {
        return sys(errnoSegment(), SYS_PREAD64, fd, address, count, offset, 0, 0);
    }

    /** ioctl with an integer (or address-as-integer) argument, errno into {@code capture}. */
    public static int ioctl(MemorySegment capture, int fd, long request, long arg) {
        return (int) sys(capture, SYS_IOCTL, fd, request, arg);
    }

    public static int ioctl(int fd, long request, long arg) {
        return ioctl(errnoSegment(), fd, request, arg);
    }

    public static long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        return sys(errnoSegment(), SYS_MMAP, addr, length, prot, flags, fd, offset);
    }

    public static int munmap(long addr, long length) {
        return (int) sys(errnoSegment(), SYS_MUNMAP, addr, length, 0);
    }

    public static final int MREMAP_MAYMOVE = 1, MREMAP_FIXED = 2;

    /** mremap(2) with a new address ({@link #MREMAP_FIXED}): the result address, or -1. */
    public static long mremap(long oldAddr, long oldSize, long newSize, int flags, long newAddr) {
        return sys(errnoSegment(), SYS_MREMAP, oldAddr, oldSize, newSize, flags, newAddr, 0);
    }

    public static int madvise(long addr, long length, int advice) {
        return (int) sys(errnoSegment(), SYS_MADVISE, addr, length, advice);
    }

    public static int mprotect(long addr, long length, int prot) {
        return (int) sys(errnoSegment(), SYS_MPROTECT, addr, length, prot);
    }

    public static int memfdCreate(String name, int flags) {
        try (Arena a = Arena.ofConfined()) {
            return (int) sys(errnoSegment(), SYS_MEMFD_CREATE, a.allocateFrom(name).address(), flags, 0);
        }
    }

    public static int ftruncate(int fd, long length) {
        return (int) sys(errnoSegment(), SYS_FTRUNCATE, fd, length, 0);
    }

    public static int fallocate(int fd, int mode, long offset, long length) {
        return (int) sys(errnoSegment(), SYS_FALLOCATE, fd, mode, offset, length, 0, 0);
    }

    /** poll(2) on {@code nfds} {@code struct pollfd} (8 bytes each: fd i32, events i16, revents i16) in {@code fds}. */
    public static int poll(MemorySegment capture, MemorySegment fds, long nfds, int timeoutMillis) {
        return (int) sys(capture, SYS_POLL, addr(fds), nfds, timeoutMillis);
    }

    public static int eventfd(int initval, int flags) {
        return (int) sys(errnoSegment(), SYS_EVENTFD2, initval, flags, 0);
    }

    /** syscall(2) with one argument. */
    public static long syscall(MemorySegment capture, long number, long arg) {
        return sys(capture, number, arg, 0, 0);
    }

    /** The calling thread's kernel thread id. */
    public static int gettid() {
        return (int) sys(errnoSegment(), SYS_GETTID, 0, 0, 0);
    }

    /**
     * Pins the calling thread to CPU {@code cpu} (sched_setaffinity(0, ...)). Returns 0, or the errno
     * (EINVAL for a CPU outside the allowed set).
     */
    public static int pinCurrentThread(int cpu) {
        if (cpu < 0 || cpu >= 1024) return Errno.EINVAL;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment mask = a.allocate(SIGSET_SIZE, 8);
            mask.set(ValueLayout.JAVA_LONG, 8L * (cpu / 64), 1L << (cpu % 64));
            MemorySegment capture = errnoSegment();
            long r = sys(capture, SYS_SCHED_SETAFFINITY, 0, SIGSET_SIZE, mask.address());
            return r == 0 ? 0 : errno(capture);
        }
    }

    /**
     * Pins the calling thread to CPU {@code index} modulo the CPUs this JVM may use (a handler and the
     * vCPU it serves pass the same index to share a CPU).
     * @throws ErrnoException naming the thread and the CPU when the kernel refuses
     */
    public static void pinCurrentThreadToCpuOf(int index) {
        int[] cpus = AllowedCpus.LIST;
        int cpu = cpus[Math.floorMod(index, cpus.length)];
        int errno = pinCurrentThread(cpu);
        if (errno != 0) throw new ErrnoException("sched_setaffinity", errno, "pinning " + Thread.currentThread().getName() + " to CPU " + cpu);
    }

    /**
     * The CPUs this process may run on (Cpus_allowed_list in /proc/self/status, read once), so that
     * index i names the i-th allowed CPU also in a container limited to, say, CPUs 2-3; 0..n-1 when
     * the file cannot be read.
     */
    private static final class AllowedCpus {
        static final int[] LIST = read();

        private static int[] read() {
            try {
                for (String line : Files.readAllLines(Path.of("/proc/self/status"))) {
                    if (line.startsWith("Cpus_allowed_list:")) {
                        int[] cpus = parseCpuList(line.substring("Cpus_allowed_list:".length()));
                        if (cpus.length > 0) return cpus;
                    }
                }
            } catch (java.io.IOException | IllegalArgumentException e) {
                // fall through: the JVM's own count
            }
            return IntStream.range(0, Runtime.getRuntime().availableProcessors()).toArray();
        }
    }

    /** Parses a kernel CPU list ("0-1", "2,4-6"): the CPUs in ascending order. */
    static int[] parseCpuList(String list) {
        BitSet set = new BitSet();
        for (String part : list.trim().split(",")) {
            if (part.isEmpty()) continue;
            int dash = part.indexOf('-');
            int lo = Integer.parseInt(dash < 0 ? part : part.substring(0, dash));
            int hi = dash < 0 ? lo : Integer.parseInt(part.substring(dash + 1));
            if (lo < 0 || hi < lo) throw new IllegalArgumentException("bad CPU range '" + part + "' in '" + list + "'");
            set.set(lo, hi + 1);
        }
        return set.stream().toArray();
    }

    /**
     * Sets the nice value of the calling thread only (setpriority(PRIO_PROCESS, gettid(), nice): on
     * Linux a thread id names one thread). Returns 0, or the errno (EACCES to lower it unprivileged).
     */
    public static int niceCurrentThread(int nice) {
        MemorySegment capture = errnoSegment();
        long r = sys(capture, SYS_SETPRIORITY, 0, gettid(), nice);
        return r == 0 ? 0 : errno(capture);
    }

    private static final ThreadLocal<MemorySegment> LOAD_BUFFER = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(8, 8));

    /**
     * Reads the 8 bytes at {@code address} with memcpy, in native code. A thread whose read faults
     * there and waits (a userfaultfd-registered page) waits in native state, where the JVM does not
     * need it for a safepoint; a Java load that waits in a fault would hold every safepoint (and so
     * any garbage collection) until the page comes, which deadlocks if the thread that brings it
     * needs one. For host threads that touch registered guest RAM (tests); vCPUs wait in KVM_RUN.
     */
    public static long loadLongInNative(long address) {
        MemorySegment buf = LOAD_BUFFER.get();
        try {
            long dst = (long) FnMemcpy.H.invokeExact(buf.address(), address, 8L);
        } catch (Throwable t) { throw rethrow(t); }
        return buf.get(ValueLayout.JAVA_LONG, 0);
    }

    /** Writes {@code value} to the 8 bytes at {@code address} with memcpy, in native code (see {@link #loadLongInNative}). */
    public static void storeLongInNative(long address, long value) {
        MemorySegment buf = LOAD_BUFFER.get();
        buf.set(ValueLayout.JAVA_LONG, 0, value);
        try {
            long dst = (long) FnMemcpy.H.invokeExact(address, buf.address(), 8L);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public static final int SCHED_OTHER = 0, SCHED_FIFO = 1, SCHED_IDLE = 5;

    /**
     * Sets the scheduling policy of the calling thread only (sched_setscheduler(0, policy, {priority})):
     * {@link #SCHED_FIFO} with a real-time priority 1..99, or {@link #SCHED_OTHER} with 0. Returns 0,
     * or the errno (EPERM without CAP_SYS_NICE or without a real-time budget in the thread's cgroup).
     */
    public static int scheduleCurrentThread(int policy, int priority) {
        MemorySegment param = SCHED_PARAM.get();   // allocation-free after a thread's first call: vCPUs call it per fault
        param.set(C_INT, 0, priority);
        MemorySegment capture = errnoSegment();
        long r = sys(capture, SYS_SCHED_SETSCHEDULER, 0, policy, param.address());
        return r == 0 ? 0 : errno(capture);
    }

    private static final ThreadLocal<MemorySegment> SCHED_PARAM = ThreadLocal.withInitial(() -> Arena.ofAuto().allocate(C_INT));

    public static int getpid() {
        return (int) sys(errnoSegment(), SYS_GETPID, 0, 0, 0);
    }

    /** tgkill(2): sends {@code sig} to thread {@code tid} of process {@code tgid}. */
    public static int tgkill(MemorySegment capture, int tgid, int tid, int sig) {
        return (int) sys(capture, SYS_TGKILL, tgid, tid, sig);
    }

    /**
     * pthread_sigmask(3) for the calling thread, as rt_sigprocmask(2) on the first 64 signals (what
     * glibc passes too) of sigset_t buffers of {@link #SIGSET_SIZE} bytes ({@code NULL} allowed). Unlike
     * glibc it does not keep glibc's internal signals (32, 33) out of a blocked set: callers block only
     * their own signals. Returns 0 or an error number, like pthread_sigmask.
     */
    public static int pthreadSigmask(int how, MemorySegment set, MemorySegment oldset) {
        MemorySegment capture = errnoSegment();
        long r = sys(capture, SYS_RT_SIGPROCMASK, how, addr(set), addr(oldset), KERNEL_SIGSET_SIZE, 0, 0);
        return r == 0 ? 0 : errno(capture);
    }

    /** sigtimedwait(2) (rt_sigtimedwait on the first 64 signals): the signal number taken from {@code set}, or -1 (EAGAIN when none is pending by the timeout). */
    public static int sigtimedwait(MemorySegment capture, MemorySegment set, MemorySegment info, MemorySegment timeout) {
        return (int) sys(capture, SYS_RT_SIGTIMEDWAIT, addr(set), addr(info), addr(timeout), KERNEL_SIGSET_SIZE, 0, 0);
    }

    /**
     * rt_sigaction(2) with the kernel's {@code struct sigaction} ({@link SigactionLayout}; {@code NULL}
     * allowed). For dispositions without a handler (SIG_DFL, SIG_IGN), which need no sa_restorer.
     */
    public static int sigaction(int sig, MemorySegment act, MemorySegment oldact) {
        return (int) sys(errnoSegment(), SYS_RT_SIGACTION, sig, addr(act), addr(oldact), KERNEL_SIGSET_SIZE, 0, 0);
    }

    /**
     * process_vm_readv(2): copies from {@code remote} iovecs of process {@code pid} into {@code local} ones.
     * On the own pid it is a memory copy that fails with EFAULT (instead of a SIGSEGV) where the
     * remote range is not accessible, and that honours protections (no FOLL_FORCE).
     */
    public static long processVmReadv(MemorySegment capture, int pid, MemorySegment local, long liovcnt,
                                      MemorySegment remote, long riovcnt) {
        return sys(capture, SYS_PROCESS_VM_READV, pid, addr(local), liovcnt, addr(remote), riovcnt, 0);
    }

    /** process_vm_writev(2): the write direction of {@link #processVmReadv}. */
    public static long processVmWritev(MemorySegment capture, int pid, MemorySegment local, long liovcnt,
                                       MemorySegment remote, long riovcnt) {
        return sys(capture, SYS_PROCESS_VM_WRITEV, pid, addr(local), liovcnt, addr(remote), riovcnt, 0);
    }

    /** Throws {@link ErrnoException} naming {@code call} and {@code subject} when {@code ret} is -1. */
    public static int check(int ret, String call, String subject) {
        if (ret == -1) throw new ErrnoException(call, lastErrno(), subject);
        return ret;
    }

    public static long check(long ret, String call, String subject) {
        if (ret == -1L) throw new ErrnoException(call, lastErrno(), subject);
        return ret;
    }

    /** As {@link #check(int, String, String)}, with errno read from {@code capture}. */
    public static int check(MemorySegment capture, int ret, String call, String subject) {
        if (ret == -1) throw new ErrnoException(call, errno(capture), subject);
        return ret;
    }
}
