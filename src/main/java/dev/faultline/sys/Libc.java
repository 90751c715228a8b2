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

    private static MethodHandle capturing(String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError(name)), fd, CAPTURE);
    }

    private static MethodHandle capturingVariadic(String name, FunctionDescriptor fd, int firstVariadic) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError(name)), fd,
                CAPTURE, Linker.Option.firstVariadicArg(firstVariadic));
    }

    private static final ValueLayout.OfInt C_INT = ValueLayout.JAVA_INT;
    private static final ValueLayout.OfLong C_LONG = ValueLayout.JAVA_LONG;
    private static final java.lang.foreign.AddressLayout C_PTR = ValueLayout.ADDRESS;

    private static MethodHandle plain(String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(LIBC.find(name).orElseThrow(() -> new UnsatisfiedLinkError(name)), fd);
    }

    // One holder class per C function: its downcall is linked when first used. Linking costs several
    // milliseconds per function in a cold JVM (about 0.3 s for all of them at once), and a command
    // uses a handful of them before its first guest instruction.
    private static final class FnOpen { static final MethodHandle H = capturingVariadic("open", FunctionDescriptor.of(C_INT, C_PTR, C_INT, C_INT), 2); }
    private static final class FnClose { static final MethodHandle H = capturing("close", FunctionDescriptor.of(C_INT, C_INT)); }
    private static final class FnRead { static final MethodHandle H = capturing("read", FunctionDescriptor.of(C_LONG, C_INT, C_PTR, C_LONG)); }
    private static final class FnWrite { static final MethodHandle H = capturing("write", FunctionDescriptor.of(C_LONG, C_INT, C_PTR, C_LONG)); }
    private static final class FnPread { static final MethodHandle H = capturing("pread", FunctionDescriptor.of(C_LONG, C_INT, C_LONG, C_LONG, C_LONG)); }
    private static final class FnIoctl { static final MethodHandle H = capturingVariadic("ioctl", FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_LONG), 2); }
    private static final class FnMmap { static final MethodHandle H = capturing("mmap", FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_INT, C_INT, C_INT, C_LONG)); }
    private static final class FnMunmap { static final MethodHandle H = capturing("munmap", FunctionDescriptor.of(C_INT, C_LONG, C_LONG)); }
    private static final class FnMadvise { static final MethodHandle H = capturing("madvise", FunctionDescriptor.of(C_INT, C_LONG, C_LONG, C_INT)); }
    private static final class FnMprotect { static final MethodHandle H = capturing("mprotect", FunctionDescriptor.of(C_INT, C_LONG, C_LONG, C_INT)); }
    private static final class FnMemfdCreate { static final MethodHandle H = capturing("memfd_create", FunctionDescriptor.of(C_INT, C_PTR, C_INT)); }
    private static final class FnFtruncate { static final MethodHandle H = capturing("ftruncate", FunctionDescriptor.of(C_INT, C_INT, C_LONG)); }
    private static final class FnFallocate { static final MethodHandle H = capturing("fallocate", FunctionDescriptor.of(C_INT, C_INT, C_INT, C_LONG, C_LONG)); }
    private static final class FnPoll { static final MethodHandle H = capturing("poll", FunctionDescriptor.of(C_INT, C_PTR, C_LONG, C_INT)); }
    private static final class FnEventfd { static final MethodHandle H = capturing("eventfd", FunctionDescriptor.of(C_INT, C_INT, C_INT)); }
    private static final class FnSyscall1 { static final MethodHandle H = capturingVariadic("syscall", FunctionDescriptor.of(C_LONG, C_LONG, C_LONG), 1); }
    private static final class FnGettid { static final MethodHandle H = plain("gettid", FunctionDescriptor.of(C_INT)); }
    private static final class FnSetpriority { static final MethodHandle H = capturing("setpriority", FunctionDescriptor.of(C_INT, C_INT, C_INT, C_INT)); }
    private static final class FnMemcpy { static final MethodHandle H = plain("memcpy", FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_LONG)); }
    private static final class FnSchedSetscheduler { static final MethodHandle H = capturing("sched_setscheduler", FunctionDescriptor.of(C_INT, C_INT, C_INT, C_PTR)); }
    private static final class FnSchedSetaffinity { static final MethodHandle H = capturing("sched_setaffinity", FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_PTR)); }
    private static final class FnGetpid { static final MethodHandle H = plain("getpid", FunctionDescriptor.of(C_INT)); }
    private static final class FnTgkill { static final MethodHandle H = capturing("tgkill", FunctionDescriptor.of(C_INT, C_INT, C_INT, C_INT)); }
    /** Returns an error number itself (0 on success); does not set errno. */
    private static final class FnPthreadSigmask { static final MethodHandle H = plain("pthread_sigmask", FunctionDescriptor.of(C_INT, C_INT, C_PTR, C_PTR)); }
    private static final class FnSigtimedwait { static final MethodHandle H = capturing("sigtimedwait", FunctionDescriptor.of(C_INT, C_PTR, C_PTR, C_PTR)); }
    private static final class FnSigaction { static final MethodHandle H = capturing("sigaction", FunctionDescriptor.of(C_INT, C_INT, C_PTR, C_PTR)); }
    private static final class FnProcessVmReadv { static final MethodHandle H = capturing("process_vm_readv", FunctionDescriptor.of(C_LONG, C_INT, C_PTR, C_LONG, C_PTR, C_LONG, C_LONG)); }
    private static final class FnProcessVmWritev { static final MethodHandle H = capturing("process_vm_writev", FunctionDescriptor.of(C_LONG, C_INT, C_PTR, C_LONG, C_PTR, C_LONG, C_LONG)); }

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
            return (int) FnOpen.H.invokeExact(errnoSegment(), a.allocateFrom(path), flags, mode);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public static int close(int fd) {
        try { return (int) FnClose.H.invokeExact(errnoSegment(), fd); } catch (Throwable t) { throw rethrow(t); }
    }

    public static long read(MemorySegment capture, int fd, MemorySegment buf, long count) {
        try { return (long) FnRead.H.invokeExact(capture, fd, buf, count); } catch (Throwable t) { throw rethrow(t); }
    }

    public static long write(MemorySegment capture, int fd, MemorySegment buf, long count) {
        try { return (long) FnWrite.H.invokeExact(capture, fd, buf, count); } catch (Throwable t) { throw rethrow(t); }
    }

    /**
     * pread(2) of {@code count} bytes at file {@code offset} into native memory at {@code address}, errno
     * into the calling thread's capture segment. Allocation-free (the address is a plain long).
     */
    public static long pread(int fd, long address, long count, long offset) {
        try { return (long) FnPread.H.invokeExact(errnoSegment(), fd, address, count, offset); } catch (Throwable t) { throw rethrow(t); }
    }

    /** ioctl with an integer (or address-as-integer) argument, errno into {@code capture}. */
    public static int ioctl(MemorySegment capture, int fd, long request, long arg) {
        try { return (int) FnIoctl.H.invokeExact(capture, fd, request, arg); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int ioctl(int fd, long request, long arg) {
        return ioctl(errnoSegment(), fd, request, arg);
    }

    public static long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        try { return (long) FnMmap.H.invokeExact(errnoSegment(), addr, length, prot, flags, fd, offset); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public static int munmap(long addr, long length) {
        try { return (int) FnMunmap.H.invokeExact(errnoSegment(), addr, length); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int madvise(long addr, long length, int advice) {
        try { return (int) FnMadvise.H.invokeExact(errnoSegment(), addr, length, advice); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int mprotect(long addr, long length, int prot) {
        try { return (int) FnMprotect.H.invokeExact(errnoSegment(), addr, length, prot); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int memfdCreate(String name, int flags) {
        try (Arena a = Arena.ofConfined()) {
            return (int) FnMemfdCreate.H.invokeExact(errnoSegment(), a.allocateFrom(name), flags);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public static int ftruncate(int fd, long length) {
        try { return (int) FnFtruncate.H.invokeExact(errnoSegment(), fd, length); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int fallocate(int fd, int mode, long offset, long length) {
        try { return (int) FnFallocate.H.invokeExact(errnoSegment(), fd, mode, offset, length); } catch (Throwable t) { throw rethrow(t); }
    }

    /** poll(2) on {@code nfds} {@code struct pollfd} (8 bytes each: fd i32, events i16, revents i16) in {@code fds}. */
    public static int poll(MemorySegment capture, MemorySegment fds, long nfds, int timeoutMillis) {
        try { return (int) FnPoll.H.invokeExact(capture, fds, nfds, timeoutMillis); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int eventfd(int initval, int flags) {
        try { return (int) FnEventfd.H.invokeExact(errnoSegment(), initval, flags); } catch (Throwable t) { throw rethrow(t); }
    }

    /** syscall(2) with one argument. */
    public static long syscall(MemorySegment capture, long number, long arg) {
        try { return (long) FnSyscall1.H.invokeExact(capture, number, arg); } catch (Throwable t) { throw rethrow(t); }
    }

    /** The calling thread's kernel thread id. */
    public static int gettid() {
        try { return (int) FnGettid.H.invokeExact(); } catch (Throwable t) { throw rethrow(t); }
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
            int r = (int) FnSchedSetaffinity.H.invokeExact(capture, 0, SIGSET_SIZE, mask);
            return r == 0 ? 0 : errno(capture);
        } catch (Throwable t) { throw rethrow(t); }
    }

    /**
     * Sets the nice value of the calling thread only (setpriority(PRIO_PROCESS, gettid(), nice): on
     * Linux a thread id names one thread). Returns 0, or the errno (EACCES to lower it unprivileged).
     */
    public static int niceCurrentThread(int nice) {
        try {
            MemorySegment capture = errnoSegment();
            int r = (int) FnSetpriority.H.invokeExact(capture, 0, gettid(), nice);
            return r == 0 ? 0 : errno(capture);
        } catch (Throwable t) { throw rethrow(t); }
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

    public static final int SCHED_OTHER = 0, SCHED_FIFO = 1;

    /**
     * Sets the scheduling policy of the calling thread only (sched_setscheduler(0, policy, {priority})):
     * {@link #SCHED_FIFO} with a real-time priority 1..99, or {@link #SCHED_OTHER} with 0. Returns 0,
     * or the errno (EPERM without CAP_SYS_NICE or without a real-time budget in the thread's cgroup).
     */
    public static int scheduleCurrentThread(int policy, int priority) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment param = a.allocate(C_INT);
            param.set(C_INT, 0, priority);
            MemorySegment capture = errnoSegment();
            int r = (int) FnSchedSetscheduler.H.invokeExact(capture, 0, policy, param);
            return r == 0 ? 0 : errno(capture);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public static int getpid() {
        try { return (int) FnGetpid.H.invokeExact(); } catch (Throwable t) { throw rethrow(t); }
    }

    /** tgkill(2): sends {@code sig} to thread {@code tid} of process {@code tgid}. */
    public static int tgkill(MemorySegment capture, int tgid, int tid, int sig) {
        try { return (int) FnTgkill.H.invokeExact(capture, tgid, tid, sig); } catch (Throwable t) { throw rethrow(t); }
    }

    /**
     * pthread_sigmask(3) on glibc sigset_t buffers of {@link #SIGSET_SIZE} bytes ({@code NULL} allowed).
     * Returns 0 or an error number (it does not use errno).
     */
    public static int pthreadSigmask(int how, MemorySegment set, MemorySegment oldset) {
        try { return (int) FnPthreadSigmask.H.invokeExact(how, set, oldset); } catch (Throwable t) { throw rethrow(t); }
    }

    /** sigtimedwait(2): the signal number taken from {@code set}, or -1 (EAGAIN when none is pending by the timeout). */
    public static int sigtimedwait(MemorySegment capture, MemorySegment set, MemorySegment info, MemorySegment timeout) {
        try { return (int) FnSigtimedwait.H.invokeExact(capture, set, info, timeout); } catch (Throwable t) { throw rethrow(t); }
    }

    /** sigaction(2) with glibc {@code struct sigaction} buffers ({@link SigactionLayout}); {@code NULL} allowed. */
    public static int sigaction(int sig, MemorySegment act, MemorySegment oldact) {
        try { return (int) FnSigaction.H.invokeExact(errnoSegment(), sig, act, oldact); } catch (Throwable t) { throw rethrow(t); }
    }

    /**
     * process_vm_readv(2): copies from {@code remote} iovecs of process {@code pid} into {@code local} ones.
     * On the own pid it is a memory copy that fails with EFAULT (instead of a SIGSEGV) where the
     * remote range is not accessible, and that honours protections (no FOLL_FORCE).
     */
    public static long processVmReadv(MemorySegment capture, int pid, MemorySegment local, long liovcnt,
                                      MemorySegment remote, long riovcnt) {
        try { return (long) FnProcessVmReadv.H.invokeExact(capture, pid, local, liovcnt, remote, riovcnt, 0L); }
        catch (Throwable t) { throw rethrow(t); }
    }

    /** process_vm_writev(2): the write direction of {@link #processVmReadv}. */
    public static long processVmWritev(MemorySegment capture, int pid, MemorySegment local, long liovcnt,
                                       MemorySegment remote, long riovcnt) {
        try { return (long) FnProcessVmWritev.H.invokeExact(capture, pid, local, liovcnt, remote, riovcnt, 0L); }
        catch (Throwable t) { throw rethrow(t); }
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
