package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;

/**
 * A userfaultfd (include/uapi/linux/userfaultfd.h): created by syscall 323 or through
 * /dev/userfaultfd's USERFAULTFD_IOC_NEW, then configured once with UFFDIO_API.
 *
 * <p>Threading: {@link #api}, {@link #register} and {@link #unregister} are set-up calls (any thread,
 * errno in the caller's own capture segment). The calls of the serving path ({@link #copy},
 * {@link #zeropage}, {@link #continueMapping}, {@link #wake}, {@link #readEvents}, {@link #poll}) take
 * a {@link Caller}: one per thread, holding that thread's errno capture segment and struct scratch,
 * so serving a fault allocates nothing and no errno segment is shared.
 */
public final class Userfaultfd implements AutoCloseable {
    public static final int UFFDIO = 0xAA;
    public static final long UFFD_API = 0xAA;
    public static final long SYS_USERFAULTFD = 323;
    public static final String DEVICE = "/dev/userfaultfd";
    /**
     * userfaultfd(2) flag: only user-mode faults are delivered (needed for unprivileged use when
     * vm.unprivileged_userfaultfd=0); a kernel-mode fault on a missing page fails instead.
     */
    public static final int USER_MODE_ONLY = 1;

    public static final long UFFDIO_API = Ioc.iowr(UFFDIO, 0x3f, UffdioApiLayout.SIZE);
    public static final long UFFDIO_REGISTER = Ioc.iowr(UFFDIO, 0x00, UffdioRegisterLayout.SIZE);
    public static final long UFFDIO_UNREGISTER = Ioc.ior(UFFDIO, 0x01, UffdioRangeLayout.SIZE);
    public static final long UFFDIO_WAKE = Ioc.ior(UFFDIO, 0x02, UffdioRangeLayout.SIZE);
    public static final long UFFDIO_COPY = Ioc.iowr(UFFDIO, 0x03, UffdioCopyLayout.SIZE);
    public static final long UFFDIO_ZEROPAGE = Ioc.iowr(UFFDIO, 0x04, UffdioZeropageLayout.SIZE);
    public static final long UFFDIO_WRITEPROTECT = Ioc.iowr(UFFDIO, 0x06, 24);
    public static final long UFFDIO_CONTINUE = Ioc.iowr(UFFDIO, 0x07, UffdioContinueLayout.SIZE);
    /** struct uffdio_poison is laid out as struct uffdio_zeropage: range, mode, updated (32 bytes). */
    public static final long UFFDIO_POISON = Ioc.iowr(UFFDIO, 0x08, UffdioZeropageLayout.SIZE);
    /** On /dev/userfaultfd: creates a userfaultfd; the argument is the userfaultfd(2) flags. */
    public static final long USERFAULTFD_IOC_NEW = Ioc.io(UFFDIO, 0x00);

    /** UFFD_FEATURE_* bits, in bit order; {@link #FEATURE_NAMES} names them. */
    public static final long FEATURE_PAGEFAULT_FLAG_WP = 1L, FEATURE_EVENT_FORK = 1L << 1, FEATURE_EVENT_REMAP = 1L << 2,
            FEATURE_EVENT_REMOVE = 1L << 3, FEATURE_MISSING_HUGETLBFS = 1L << 4, FEATURE_MISSING_SHMEM = 1L << 5,
            FEATURE_EVENT_UNMAP = 1L << 6, FEATURE_SIGBUS = 1L << 7, FEATURE_THREAD_ID = 1L << 8,
            FEATURE_MINOR_HUGETLBFS = 1L << 9, FEATURE_MINOR_SHMEM = 1L << 10, FEATURE_EXACT_ADDRESS = 1L << 11,
            FEATURE_WP_HUGETLBFS_SHMEM = 1L << 12, FEATURE_WP_UNPOPULATED = 1L << 13, FEATURE_POISON = 1L << 14,
            FEATURE_WP_ASYNC = 1L << 15, FEATURE_MOVE = 1L << 16;
    public static final String[] FEATURE_NAMES = {"PAGEFAULT_FLAG_WP", "EVENT_FORK", "EVENT_REMAP", "EVENT_REMOVE",
            "MISSING_HUGETLBFS", "MISSING_SHMEM", "EVENT_UNMAP", "SIGBUS", "THREAD_ID", "MINOR_HUGETLBFS",
            "MINOR_SHMEM", "EXACT_ADDRESS", "WP_HUGETLBFS_SHMEM", "WP_UNPOPULATED", "POISON", "WP_ASYNC", "MOVE"};

    /** UFFDIO_REGISTER modes. */
    public static final long REGISTER_MODE_MISSING = 1, REGISTER_MODE_WP = 1 << 1, REGISTER_MODE_MINOR = 1 << 2;

    /** Bit numbers of the ioctls bitmask that UFFDIO_API and UFFDIO_REGISTER report (1 &lt;&lt; _UFFDIO_x). */
    public static final int IOCTL_REGISTER = 0x00, IOCTL_UNREGISTER = 0x01, IOCTL_WAKE = 0x02, IOCTL_COPY = 0x03,
            IOCTL_ZEROPAGE = 0x04, IOCTL_MOVE = 0x05, IOCTL_WRITEPROTECT = 0x06, IOCTL_CONTINUE = 0x07,
            IOCTL_POISON = 0x08, IOCTL_API = 0x3f;

    /** uffd_msg.event values. */
    public static final int EVENT_PAGEFAULT = 0x12, EVENT_FORK = 0x13, EVENT_REMAP = 0x14, EVENT_REMOVE = 0x15,
            EVENT_UNMAP = 0x16;
    /** uffd_msg.arg.pagefault.flags. */
    public static final long PAGEFAULT_FLAG_WRITE = 1, PAGEFAULT_FLAG_WP = 1 << 1, PAGEFAULT_FLAG_MINOR = 1 << 2;
    /** Mode bit of COPY, ZEROPAGE and CONTINUE: do not wake the faulting threads (wake later with {@link #wake}). */
    public static final long MODE_DONTWAKE = 1;

    /** How a userfaultfd is obtained. */
    public enum Source { SYSCALL, DEVICE }

    private final int fd;
    private final Source source;
    private volatile long features = -1, ioctls;
    private volatile boolean closed;

    private Userfaultfd(int fd, Source source) {
        this.fd = fd;
        this.source = source;
    }

    /**
     * A new userfaultfd, non-blocking and close-on-exec, through {@code source}.
     * @throws ErrnoException naming userfaultfd(2) or USERFAULTFD_IOC_NEW and the errno
     */
    public static Userfaultfd open(Source source) { return open(source, false); }

    /**
     * A new close-on-exec userfaultfd through {@code source}; {@code blocking}: {@link #readEvents}
     * sleeps until an event is pending instead of returning 0 (for a handler that sleeps in read()
     * rather than in poll()).
     */
    public static Userfaultfd open(Source source, boolean blocking) { return open(source, blocking, false); }

    /**
     * As {@link #open(Source, boolean)}; {@code userModeOnly} ({@link #USER_MODE_ONLY}): only faults
     * taken in user mode are delivered. A fault the kernel takes on the process's behalf (a copy to
     * or from user memory, get_user_pages, and so KVM's own accesses to guest RAM) on a missing page
     * then fails with EFAULT instead of waiting for a handler: KVM_RUN comes back to userspace, and
     * the vCPU's thread can serve the page itself (docs/paging.md, "Exit delivery on kvm").
     */
    public static Userfaultfd open(Source source, boolean blocking, boolean userModeOnly) {
        int flags = Libc.O_CLOEXEC | (blocking ? 0 : Libc.O_NONBLOCK) | (userModeOnly ? USER_MODE_ONLY : 0);
        String flagNames = "flags O_CLOEXEC" + (blocking ? "" : "|O_NONBLOCK") + (userModeOnly ? "|UFFD_USER_MODE_ONLY" : "");
        MemorySegment capture = Libc.errnoSegment();
        if (source == Source.SYSCALL) {
            long fd = Libc.syscall(capture, SYS_USERFAULTFD, flags);
            if (fd == -1) throw new ErrnoException("userfaultfd(2)", Libc.errno(capture), flagNames);
            return new Userfaultfd((int) fd, source);
        }
        int dev = Libc.open(DEVICE, Libc.O_RDWR | Libc.O_CLOEXEC, 0);
        if (dev == -1) throw new ErrnoException("open", Libc.lastErrno(), DEVICE);
        try {
            int fd = Libc.ioctl(capture, dev, USERFAULTFD_IOC_NEW, flags);
            if (fd == -1) throw new ErrnoException("USERFAULTFD_IOC_NEW", Libc.errno(capture), DEVICE + ", " + flagNames);
            return new Userfaultfd(fd, source);
        } finally {
            Libc.close(dev);
        }
    }

    /**
     * A userfaultfd this process received from another (SCM_RIGHTS), which that process already
     * configured with UFFDIO_API and registered ranges with: it is not configured again (a second
     * UFFDIO_API fails), {@link #features()} stays -1. Closing it closes only this descriptor.
     */
    public static Userfaultfd adopt(int fd) {
        if (fd < 0) throw new IllegalArgumentException("no descriptor: " + fd);
        return new Userfaultfd(fd, Source.SYSCALL);
    }

    /**
     * A userfaultfd made as Firecracker makes its own (userfaultfd-rs's UffdBuilder with close_on_exec,
     * non_blocking and user_mode_only(false)): through /dev/userfaultfd when it exists, falling back to
     * the system call only when the device is missing (ENOENT); O_CLOEXEC|O_NONBLOCK, kernel-mode faults
     * delivered too.
     */
    public static Userfaultfd openAsFirecracker() {
        try {
            return open(Source.DEVICE, false, false);
        } catch (ErrnoException e) {
            if (e.errno() != Errno.ENOENT) throw e;
            return open(Source.SYSCALL, false, false);
        }
    }

    /** The syscall, or /dev/userfaultfd when the syscall is refused (EPERM for kernel faults, ENOSYS); non-blocking. */
    public static Userfaultfd open() { return open(false); }

    /** As {@link #open()}, blocking or not ({@link #open(Source, boolean)}). */
    public static Userfaultfd open(boolean blocking) { return open(blocking, false); }

    /** As {@link #open()}, blocking or not, user-mode faults only or not ({@link #open(Source, boolean, boolean)}). */
    public static Userfaultfd open(boolean blocking, boolean userModeOnly) {
        try {
            return open(Source.SYSCALL, blocking, userModeOnly);
        } catch (ErrnoException e) {
            try {
                return open(Source.DEVICE, blocking, userModeOnly);
            } catch (ErrnoException e2) {
                e2.addSuppressed(e);
                throw e2;
            }
        }
    }

    /**
     * The features the kernel offers, from UFFDIO_API with no feature requested on a throwaway
     * userfaultfd (UFFDIO_API may be called once per fd).
     */
    public static long offeredFeatures(Source source) {
        try (Userfaultfd u = open(source)) {
            u.api(0);
            return u.features();
        }
    }

    /** Whether the kernel's userfaultfd (the system call) offers {@code feature}; false where userfaultfd is unusable. */
    public static boolean offers(long feature) {
        try {
            return (offeredFeatures(Source.SYSCALL) & feature) == feature;
        } catch (ErrnoException e) {
            return false;
        }
    }

    public int fd() { return fd; }
    public Source source() { return source; }

    /**
     * UFFDIO_API requesting {@code requested} features. Returns the feature mask the kernel reports
     * (the requested ones are all enabled; the kernel reports every feature it supports).
     * @throws ErrnoException EINVAL when a requested feature is not offered
     */
    public long api(long requested) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(UffdioApiLayout.SIZE, 8);
            s.set(ValueLayout.JAVA_LONG, UffdioApiLayout.API, UFFD_API);
            s.set(ValueLayout.JAVA_LONG, UffdioApiLayout.FEATURES, requested);
            MemorySegment capture = Libc.errnoSegment();
            Libc.check(capture, Libc.ioctl(capture, fd, UFFDIO_API, s.address()), "UFFDIO_API",
                    "userfaultfd " + fd + ", features " + String.join("|", featureNames(requested)));
            features = s.get(ValueLayout.JAVA_LONG, UffdioApiLayout.FEATURES);
            ioctls = s.get(ValueLayout.JAVA_LONG, UffdioApiLayout.IOCTLS);
            return features;
        }
    }

    /** Features reported by {@link #api}, or -1 before it. */
    public long features() { return features; }
    /** The ioctls bitmask reported by {@link #api}. */
    public long apiIoctls() { return ioctls; }

    /**
     * UFFDIO_REGISTER of [start, start+len) in {@code mode} ({@link #REGISTER_MODE_MISSING} ...).
     * Returns the bitmask of ioctls ({@code 1L << IOCTL_COPY} ...) usable on the range.
     */
    public long register(long start, long len, long mode) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(UffdioRegisterLayout.SIZE, 8);
            s.set(ValueLayout.JAVA_LONG, UffdioRegisterLayout.RANGE_START, start);
            s.set(ValueLayout.JAVA_LONG, UffdioRegisterLayout.RANGE_LEN, len);
            s.set(ValueLayout.JAVA_LONG, UffdioRegisterLayout.MODE, mode);
            MemorySegment capture = Libc.errnoSegment();
            Libc.check(capture, Libc.ioctl(capture, fd, UFFDIO_REGISTER, s.address()), "UFFDIO_REGISTER",
                    rangeName(start, len) + " mode " + modeName(mode));
            return s.get(ValueLayout.JAVA_LONG, UffdioRegisterLayout.IOCTLS);
        }
    }

    public void unregister(long start, long len) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(UffdioRangeLayout.SIZE, 8);
            s.set(ValueLayout.JAVA_LONG, UffdioRangeLayout.START, start);
            s.set(ValueLayout.JAVA_LONG, UffdioRangeLayout.LEN, len);
            MemorySegment capture = Libc.errnoSegment();
            Libc.check(capture, Libc.ioctl(capture, fd, UFFDIO_UNREGISTER, s.address()), "UFFDIO_UNREGISTER", rangeName(start, len));
        }
    }

    /** What one thread needs to serve faults without allocating. Not shareable between threads. */
    public static final class Caller {
        final MemorySegment capture = Libc.newErrnoSegment();
        final MemorySegment scratch;
        final MemorySegment pollfds;

        public Caller() {
            Arena arena = Arena.ofAuto();
            scratch = arena.allocate(64, 8);
            pollfds = arena.allocate(16, 8);
        }

        /** errno of this caller's last failed call. */
        public int lastErrno() { return Libc.errno(capture); }
    }

    /**
     * UFFDIO_COPY of {@code len} bytes from {@code src} to the registered range at {@code dst}, waking
     * the faulting threads unless {@link #MODE_DONTWAKE}. Returns the bytes copied, or a negative errno
     * for the races the kernel documents and a server must tolerate: -EEXIST (already mapped, e.g. served
     * by another thread), -EAGAIN (mapping changing, retry), -ENOENT (layout changed), -ESRCH (faulting
     * process gone). Partial copies return the positive count. Any other failure throws.
     */
    public long copy(Caller c, long dst, long src, long len, long mode) {
        MemorySegment s = c.scratch;
        s.set(ValueLayout.JAVA_LONG, UffdioCopyLayout.DST, dst);
        s.set(ValueLayout.JAVA_LONG, UffdioCopyLayout.SRC, src);
        s.set(ValueLayout.JAVA_LONG, UffdioCopyLayout.LEN, len);
        s.set(ValueLayout.JAVA_LONG, UffdioCopyLayout.MODE, mode);
        s.set(ValueLayout.JAVA_LONG, UffdioCopyLayout.COPY, 0);
        int ret = Libc.ioctl(c.capture, fd, UFFDIO_COPY, s.address());
        return result(c, ret, s.get(ValueLayout.JAVA_LONG, UffdioCopyLayout.COPY), "UFFDIO_COPY", dst, len);
    }

    /** UFFDIO_ZEROPAGE on [start, start+len): results as {@link #copy}. */
    public long zeropage(Caller c, long start, long len, long mode) {
        return rangeIoctl(c, UFFDIO_ZEROPAGE, "UFFDIO_ZEROPAGE", start, len, mode);
    }

    /** UFFDIO_CONTINUE (MINOR mode): maps the page-cache pages of [start, start+len). Results as {@link #copy}. */
    public long continueMapping(Caller c, long start, long len, long mode) {
        return rangeIoctl(c, UFFDIO_CONTINUE, "UFFDIO_CONTINUE", start, len, mode);
    }

    /**
     * UFFDIO_POISON (UFFD_FEATURE_POISON, Linux 6.6): puts a poison marker in the page table entries of
     * the missing pages of [start, start+len), so that any later access, a CPU's or get_user_pages'
     * (KVM's), fails as a hardware-poisoned page would (VM_FAULT_HWPOISON) until the range is unmapped.
     * A present page is EEXIST. Results as {@link #copy}.
     */
    public long poison(Caller c, long start, long len, long mode) {
        return rangeIoctl(c, UFFDIO_POISON, "UFFDIO_POISON", start, len, mode);
    }

    /**
     * The ioctls whose argument is a range, a mode and the bytes done: struct uffdio_zeropage and
     * struct uffdio_continue (and struct uffdio_poison) have the same layout (checked in LayoutsTest).
     */
    private long rangeIoctl(Caller c, long request, String name, long start, long len, long mode) {
        MemorySegment s = c.scratch;
        s.set(ValueLayout.JAVA_LONG, UffdioZeropageLayout.RANGE_START, start);
        s.set(ValueLayout.JAVA_LONG, UffdioZeropageLayout.RANGE_LEN, len);
        s.set(ValueLayout.JAVA_LONG, UffdioZeropageLayout.MODE, mode);
        s.set(ValueLayout.JAVA_LONG, UffdioZeropageLayout.ZEROPAGE, 0);
        int ret = Libc.ioctl(c.capture, fd, request, s.address());
        return result(c, ret, s.get(ValueLayout.JAVA_LONG, UffdioZeropageLayout.ZEROPAGE), name, start, len);
    }

    /** UFFDIO_WAKE: wakes threads waiting on faults in [start, start+len). */
    public void wake(Caller c, long start, long len) {
        MemorySegment s = c.scratch;
        s.set(ValueLayout.JAVA_LONG, UffdioRangeLayout.START, start);
        s.set(ValueLayout.JAVA_LONG, UffdioRangeLayout.LEN, len);
        Libc.check(c.capture, Libc.ioctl(c.capture, fd, UFFDIO_WAKE, s.address()), "UFFDIO_WAKE", rangeName(start, len));
    }

    private long result(Caller c, int ret, long done, String call, long start, long len) {
        if (ret == 0) return done;
        int errno = Libc.errno(c.capture);
        if (done > 0) return done; // partial progress (EAGAIN after some pages)
        return switch (errno) {
            case Errno.EEXIST, Errno.EAGAIN, Errno.ENOENT, Errno.ESRCH -> -errno;
            default -> throw new ErrnoException(call, errno, rangeName(start, len));
        };
    }

    /**
     * Reads pending events into {@code into} and returns their count. On a non-blocking userfaultfd
     * (the default) 0 when none is pending; on a blocking one it sleeps until one is (0 only when a
     * signal interrupted the sleep).
     */
    public int readEvents(Caller c, UffdEvents into) {
        MemorySegment buf = into.buffer();
        long n = Libc.read(c.capture, fd, buf, buf.byteSize());
        if (n == -1) {
            int errno = Libc.errno(c.capture);
            if (errno == Errno.EAGAIN || errno == Errno.EINTR) { into.count(0); return 0; }
            throw new ErrnoException("read", errno, "userfaultfd " + fd);
        }
        if (n % UffdMsgLayout.SIZE != 0) {
            throw new IllegalStateException("read of userfaultfd " + fd + " returned " + n + " bytes, not whole uffd_msg records");
        }
        into.count((int) (n / UffdMsgLayout.SIZE));
        return into.count();
    }

    /** poll result bits. */
    public static final int READY_UFFD = 1, READY_OTHER = 2;

    /**
     * Sleeps in poll(2) until events are pending, {@code otherFd} (e.g. an eventfd used to stop the
     * handler; -1 for none) is readable, or {@code timeoutMillis} passes (-1: forever). Returns
     * {@link #READY_UFFD} | {@link #READY_OTHER}, 0 on timeout or EINTR. POLLERR on the userfaultfd
     * (the mm has gone) counts as ready so the caller reads and notices.
     */
    public int poll(Caller c, int otherFd, int timeoutMillis) {
        MemorySegment p = c.pollfds;
        p.set(ValueLayout.JAVA_INT, 0, fd);
        p.set(ValueLayout.JAVA_SHORT, 4, Libc.POLLIN);
        p.set(ValueLayout.JAVA_SHORT, 6, (short) 0);
        p.set(ValueLayout.JAVA_INT, 8, otherFd);
        p.set(ValueLayout.JAVA_SHORT, 12, Libc.POLLIN);
        p.set(ValueLayout.JAVA_SHORT, 14, (short) 0);
        int ret = Libc.poll(c.capture, p, otherFd >= 0 ? 2 : 1, timeoutMillis);
        if (ret == -1) {
            int errno = Libc.errno(c.capture);
            if (errno == Errno.EINTR) return 0;
            throw new ErrnoException("poll", errno, "userfaultfd " + fd);
        }
        int ready = 0;
        if (p.get(ValueLayout.JAVA_SHORT, 6) != 0) ready |= READY_UFFD;
        if (otherFd >= 0 && p.get(ValueLayout.JAVA_SHORT, 14) != 0) ready |= READY_OTHER;
        return ready;
    }

    /** Names of the set UFFD_FEATURE_* bits, in bit order; unknown bits as "bit N". */
    public static List<String> featureNames(long features) {
        List<String> names = new ArrayList<>();
        for (int bit = 0; bit < 64; bit++) {
            if ((features & (1L << bit)) == 0) continue;
            names.add(bit < FEATURE_NAMES.length ? FEATURE_NAMES[bit] : "bit " + bit);
        }
        return names;
    }

    /** Names of the ioctls in a UFFDIO_API / UFFDIO_REGISTER bitmask. */
    public static List<String> ioctlNames(long mask) {
        List<String> names = new ArrayList<>();
        for (int bit = 0; bit < 64; bit++) {
            if ((mask & (1L << bit)) == 0) continue;
            names.add(switch (bit) {
                case IOCTL_REGISTER -> "REGISTER";
                case IOCTL_UNREGISTER -> "UNREGISTER";
                case IOCTL_WAKE -> "WAKE";
                case IOCTL_COPY -> "COPY";
                case IOCTL_ZEROPAGE -> "ZEROPAGE";
                case IOCTL_MOVE -> "MOVE";
                case IOCTL_WRITEPROTECT -> "WRITEPROTECT";
                case IOCTL_CONTINUE -> "CONTINUE";
                case IOCTL_POISON -> "POISON";
                case IOCTL_API -> "API";
                default -> "bit " + bit;
            });
        }
        return names;
    }

    private static String modeName(long mode) {
        List<String> m = new ArrayList<>();
        if ((mode & REGISTER_MODE_MISSING) != 0) m.add("MISSING");
        if ((mode & REGISTER_MODE_WP) != 0) m.add("WP");
        if ((mode & REGISTER_MODE_MINOR) != 0) m.add("MINOR");
        return m.isEmpty() ? "0" : String.join("|", m);
    }

    private String rangeName(long start, long len) {
        return "userfaultfd " + fd + ", range [0x" + Long.toHexString(start) + ", +0x" + Long.toHexString(len) + ")";
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.close(fd);
    }

    @Override
    public String toString() {
        return "userfaultfd " + fd + " (" + source.name().toLowerCase() + ")";
    }
}
