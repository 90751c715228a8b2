package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

/**
 * A host mapping that backs guest memory: anonymous private memory or a shared memfd mapping.
 * The same object backs a memslot on the kvm backend and on the ref backend, so snapshots,
 * page sources and checksums work unchanged on either.
 *
 * <p>Thread safety: the mapping may be read and written by any thread; {@link #close()} must happen
 * after every user (vCPU, handler thread) has stopped.
 */
public final class HostMemory implements AutoCloseable {
    public enum Kind { ANONYMOUS, MEMFD }

    private final Kind kind;
    private final long address;
    private final long size;
    private final int fd;
    private final MemorySegment segment;
    private final boolean ownsFd;
    private volatile boolean closed;

    private HostMemory(Kind kind, long address, long size, int fd) {
        this(kind, address, size, fd, true);
    }

    private HostMemory(Kind kind, long address, long size, int fd, boolean ownsFd) {
        this.kind = kind;
        this.address = address;
        this.size = size;
        this.fd = fd;
        this.ownsFd = ownsFd;
        this.segment = MemorySegment.ofAddress(address).reinterpret(size);
    }

    /**
     * A second MAP_SHARED mapping of this memfd: the same page cache at another address. Writing
     * through it fills pages without touching this mapping's page tables, which is how userfaultfd
     * MINOR mode is served (fill the page cache, then UFFDIO_CONTINUE). Closing the alias unmaps it
     * and leaves the memfd open.
     * @throws IllegalStateException for anonymous memory, which has no page cache to share
     */
    public HostMemory alias() {
        if (kind != Kind.MEMFD) throw new IllegalStateException("an alias mapping needs memfd-backed memory, not " + this);
        long addr = Libc.mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
        Libc.check(addr, "mmap(MAP_SHARED)", "alias of memfd " + fd);
        return new HostMemory(Kind.MEMFD, addr, size, fd, false);
    }

    /** Private anonymous memory, reserved lazily (MAP_NORESERVE): pages appear on first touch. */
    public static HostMemory anonymous(long size) {
        checkSize(size);
        long addr = Libc.mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE,
                Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        Libc.check(addr, "mmap(MAP_PRIVATE|MAP_ANONYMOUS)", "guest memory of " + size + " bytes");
        return new HostMemory(Kind.ANONYMOUS, addr, size, -1);
    }

    /** A memfd of {@code size} bytes mapped MAP_SHARED (needed for userfaultfd MINOR mode). */
    public static HostMemory memfd(String name, long size) {
        checkSize(size);
        int fd = Libc.check(Libc.memfdCreate(name, Libc.MFD_CLOEXEC), "memfd_create", name);
        try {
            Libc.check(Libc.ftruncate(fd, size), "ftruncate", "memfd " + name + " to " + size + " bytes");
            long addr = Libc.mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE, Libc.MAP_SHARED, fd, 0);
            Libc.check(addr, "mmap(MAP_SHARED)", "memfd " + name);
            return new HostMemory(Kind.MEMFD, addr, size, fd);
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /**
     * A zeroed scratch buffer of {@code size} bytes (a multiple of 4 KiB, page-aligned) from a private
     * anonymous mapping that is unmapped once the returned segment is unreachable. Unlike an arena
     * allocation, which zeroes (and so faults in) every page up front, nothing is touched here: pages
     * appear on first use, so a staging buffer that is allocated on a start-up path and mostly used
     * later costs one mmap there.
     */
    public static MemorySegment scratch(long size) {
        checkSize(size);
        long addr = Libc.mmap(0, size, Libc.PROT_READ | Libc.PROT_WRITE,
                Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE, -1, 0);
        Libc.check(addr, "mmap(MAP_PRIVATE|MAP_ANONYMOUS)", "scratch buffer of " + size + " bytes");
        return MemorySegment.ofAddress(addr).reinterpret(size, Arena.ofAuto(), s -> Libc.munmap(s.address(), size));
    }

    private static void checkSize(long size) {
        if (size <= 0 || (size & 0xfff) != 0) {
            throw new IllegalArgumentException("guest memory size must be a positive multiple of 4 KiB, got " + size);
        }
    }

    public Kind kind() { return kind; }
    /** Host virtual address of the first byte (the memslot's userspace_addr). */
    public long address() { return address; }
    public long size() { return size; }
    /** The memfd, or -1 for anonymous memory. */
    public int fd() { return fd; }
    /** The whole mapping as a segment of {@link #size()} bytes. */
    public MemorySegment segment() { return segment; }

    /** Drops the pages of a range (MADV_DONTNEED for anonymous, MADV_REMOVE for memfd): they read as missing again. */
    public void discard(long offset, long length) {
        checkRange(offset, length);
        int advice = kind == Kind.MEMFD ? Libc.MADV_REMOVE : Libc.MADV_DONTNEED;
        Libc.check(Libc.madvise(address + offset, length, advice), "madvise", rangeName(offset, length));
    }

    public void protect(long offset, long length, int prot) {
        checkRange(offset, length);
        Libc.check(Libc.mprotect(address + offset, length, prot), "mprotect", rangeName(offset, length));
    }

    private void checkRange(long offset, long length) {
        if (offset < 0 || length < 0 || offset + length > size || ((offset | length) & 0xfff) != 0) {
            throw new IllegalArgumentException("range " + rangeName(offset, length) + " is not page-aligned inside "
                    + size + " bytes of host memory");
        }
    }

    private String rangeName(long offset, long length) {
        return "host memory [0x" + Long.toHexString(offset) + ", +0x" + Long.toHexString(length) + ")";
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.munmap(address, size);
        if (fd >= 0 && ownsFd) Libc.close(fd);
    }

    @Override
    public String toString() {
        return kind.name().toLowerCase() + " host memory @0x" + Long.toHexString(address) + " (" + size + " bytes)";
    }
}
