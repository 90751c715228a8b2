package dev.faultline.pageserver;

import dev.faultline.paging.PageSource;
import dev.faultline.paging.PageSourceException;
import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.FileStatus;
import dev.faultline.sys.Libc;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;

/**
 * A Firecracker memory file (guest memory, flat: region i's bytes at its offset), opened once and
 * mapped once (read-only, MAP_SHARED) for every VM the handler serves: all VMs restoring it share the
 * one page cache of it, and UFFDIO_COPY takes each page straight from the mapping into the VM (no
 * read into a buffer first: {@link #mappedAddress}). The file is opened without following a symbolic
 * link and checked on its descriptor (a regular file, whole pages, not empty). Java never reads the
 * mapping itself (a file truncated under it would raise SIGBUS there); {@link #fill}, for runs that
 * need mixing with zeros, reads with pread(2).
 */
public final class MemoryFile implements PageSource {
    private final Path path;
    private final int fd;
    private final long size, address;
    private final long device, inode;
    private volatile boolean closed;

    private MemoryFile(Path path, int fd, long size, long address, long device, long inode) {
        this.path = path;
        this.fd = fd;
        this.size = size;
        this.address = address;
        this.device = device;
        this.inode = inode;
    }

    /**
     * Opens and maps {@code path}; {@code populate}: map every page now (MAP_POPULATE, as Firecracker's
     * example handlers do), so no UFFDIO_COPY waits for the file's page to be read or mapped.
     * @throws IllegalArgumentException one line naming the file and the reason
     */
    public static MemoryFile open(Path path, boolean populate) {
        FileStatus st;
        try {
            st = FileStatus.openReadOnly(path);
        } catch (ErrnoException e) {
            throw new IllegalArgumentException("memory file " + path + " cannot be opened: " + e.getMessage(), e);
        }
        try {
            if (!st.isRegularFile()) throw new IllegalArgumentException("memory file " + path + " is not a regular file");
            if (st.size() <= 0 || st.size() % Handshake.PAGE != 0) {
                throw new IllegalArgumentException("memory file " + path + " has " + st.size() + " bytes; a memory file is a positive number of 4 KiB pages");
            }
            long addr = Libc.mmap(0, st.size(), Libc.PROT_READ, Libc.MAP_SHARED | (populate ? Libc.MAP_POPULATE : 0), st.fd(), 0);
            if (addr == Libc.MAP_FAILED) {
                throw new IllegalArgumentException("memory file " + path + " cannot be mapped: " + Errno.describe(Libc.lastErrno()));
            }
            return new MemoryFile(path, st.fd(), st.size(), addr, st.device(), st.inode());
        } catch (RuntimeException e) {
            Libc.close(st.fd());
            throw e;
        }
    }

    public Path path() { return path; }
    public long size() { return size; }
    /** "device:inode", which names the file whatever path led to it. */
    public String identity() { return device + ":" + inode; }

    @Override
    public void fill(long offset, MemorySegment dst, long dstOffset, long len) {
        if (closed) throw new PageSourceException("memory file " + path + " is closed");
        if (offset < 0 || len > size - offset) {
            throw new PageSourceException(String.format("memory file %s: [0x%x, +0x%x) lies past its end (%d bytes)", path, offset, len, size));
        }
        long done = 0, base = dst.address() + dstOffset;
        while (done < len) {
            long n = Libc.pread(fd, base + done, len - done, offset + done);
            if (n == -1 && Libc.lastErrno() == Errno.EINTR) continue;
            if (n == -1) {
                throw new PageSourceException(String.format("memory file %s: pread at offset 0x%x failed: %s", path, offset + done,
                        Errno.describe(Libc.lastErrno())));
            }
            if (n == 0) throw new PageSourceException(String.format("memory file %s ends at offset 0x%x (truncated since it was opened?)", path, offset + done));
            done += n;
        }
    }

    @Override
    public long mappedAddress(long offset, long len) {
        return offset >= 0 && len <= size - offset ? address + offset : 0;
    }

    @Override
    public String describe() { return "memory file " + path + " (" + size + " bytes)"; }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.munmap(address, size);
        Libc.close(fd);
    }
}
