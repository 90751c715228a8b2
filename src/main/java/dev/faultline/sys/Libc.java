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

    private static final MethodHandle open = capturingVariadic("open", FunctionDescriptor.of(C_INT, C_PTR, C_INT, C_INT), 2);
    private static final MethodHandle close = capturing("close", FunctionDescriptor.of(C_INT, C_INT));
    private static final MethodHandle read = capturing("read", FunctionDescriptor.of(C_LONG, C_INT, C_PTR, C_LONG));
    private static final MethodHandle write = capturing("write", FunctionDescriptor.of(C_LONG, C_INT, C_PTR, C_LONG));
    private static final MethodHandle ioctl = capturingVariadic("ioctl", FunctionDescriptor.of(C_INT, C_INT, C_LONG, C_LONG), 2);
    private static final MethodHandle mmap = capturing("mmap", FunctionDescriptor.of(C_LONG, C_LONG, C_LONG, C_INT, C_INT, C_INT, C_LONG));
    private static final MethodHandle munmap = capturing("munmap", FunctionDescriptor.of(C_INT, C_LONG, C_LONG));
    private static final MethodHandle madvise = capturing("madvise", FunctionDescriptor.of(C_INT, C_LONG, C_LONG, C_INT));
    private static final MethodHandle mprotect = capturing("mprotect", FunctionDescriptor.of(C_INT, C_LONG, C_LONG, C_INT));
    private static final MethodHandle memfd_create = capturing("memfd_create", FunctionDescriptor.of(C_INT, C_PTR, C_INT));
    private static final MethodHandle ftruncate = capturing("ftruncate", FunctionDescriptor.of(C_INT, C_INT, C_LONG));
    private static final MethodHandle fallocate = capturing("fallocate", FunctionDescriptor.of(C_INT, C_INT, C_INT, C_LONG, C_LONG));

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
            return (int) open.invokeExact(errnoSegment(), a.allocateFrom(path), flags, mode);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public static int close(int fd) {
        try { return (int) close.invokeExact(errnoSegment(), fd); } catch (Throwable t) { throw rethrow(t); }
    }

    public static long read(MemorySegment capture, int fd, MemorySegment buf, long count) {
        try { return (long) read.invokeExact(capture, fd, buf, count); } catch (Throwable t) { throw rethrow(t); }
    }

    public static long write(MemorySegment capture, int fd, MemorySegment buf, long count) {
        try { return (long) write.invokeExact(capture, fd, buf, count); } catch (Throwable t) { throw rethrow(t); }
    }

    /** ioctl with an integer (or address-as-integer) argument, errno into {@code capture}. */
    public static int ioctl(MemorySegment capture, int fd, long request, long arg) {
        try { return (int) ioctl.invokeExact(capture, fd, request, arg); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int ioctl(int fd, long request, long arg) {
        return ioctl(errnoSegment(), fd, request, arg);
    }

    public static long mmap(long addr, long length, int prot, int flags, int fd, long offset) {
        try { return (long) mmap.invokeExact(errnoSegment(), addr, length, prot, flags, fd, offset); }
        catch (Throwable t) { throw rethrow(t); }
    }

    public static int munmap(long addr, long length) {
        try { return (int) munmap.invokeExact(errnoSegment(), addr, length); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int madvise(long addr, long length, int advice) {
        try { return (int) madvise.invokeExact(errnoSegment(), addr, length, advice); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int mprotect(long addr, long length, int prot) {
        try { return (int) mprotect.invokeExact(errnoSegment(), addr, length, prot); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int memfdCreate(String name, int flags) {
        try (Arena a = Arena.ofConfined()) {
            return (int) memfd_create.invokeExact(errnoSegment(), a.allocateFrom(name), flags);
        } catch (Throwable t) { throw rethrow(t); }
    }

    public static int ftruncate(int fd, long length) {
        try { return (int) ftruncate.invokeExact(errnoSegment(), fd, length); } catch (Throwable t) { throw rethrow(t); }
    }

    public static int fallocate(int fd, int mode, long offset, long length) {
        try { return (int) fallocate.invokeExact(errnoSegment(), fd, mode, offset, length); } catch (Throwable t) { throw rethrow(t); }
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
}
