package dev.faultline.paging;

import dev.faultline.sys.Errno;
import dev.faultline.sys.Libc;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Pages from a flat image of guest RAM: file offset = guest-physical address. The file may be
 * shorter than RAM (pages past its end read as zeros) and sparse (holes read as zeros); it may not
 * be longer than RAM. Reads go through pread(2) straight into the destination (no Java buffer), so
 * any number of threads read at once without a lock.
 *
 * <p>A snapshot source that stores memory in chunks with checksums is the same shape: it maps a gpa
 * to (chunk file, offset) and verifies the chunk before it hands out its pages.
 */
public final class FileSource implements PageSource {
    private final Path file;
    private final int fd;
    private final long fileSize;
    private volatile boolean closed;

    private FileSource(Path file, int fd, long fileSize) {
        this.file = file;
        this.fd = fd;
        this.fileSize = fileSize;
    }

    /**
     * Opens {@code file} as the image of {@code ramSize} bytes of guest RAM.
     * @throws PageSourceException when the file is missing, unreadable, a directory, or larger than RAM
     */
    public static FileSource open(Path file, long ramSize) {
        if (Files.isDirectory(file)) throw new PageSourceException("page file " + file + " is a directory, not a flat RAM image");
        long size;
        try {
            size = Files.size(file);
        } catch (IOException e) {
            throw new PageSourceException("page file " + file + " cannot be read: " + e.getMessage(), e);
        }
        if (size > ramSize) {
            throw new PageSourceException("page file " + file + " has " + size + " bytes, more than the " + ramSize
                    + " bytes of guest RAM it should image");
        }
        int fd = Libc.open(file.toString(), Libc.O_RDONLY | Libc.O_CLOEXEC, 0);
        if (fd == -1) {
            throw new PageSourceException("page file " + file + " cannot be opened: " + Errno.describe(Libc.lastErrno()));
        }
        return new FileSource(file, fd, size);
    }

    public Path file() { return file; }
    public long fileSize() { return fileSize; }

    @Override
    public void fill(long gpa, MemorySegment dst, long dstOffset, long len) {
        if (closed) throw new PageSourceException("page file " + file + " is closed (read at offset 0x" + Long.toHexString(gpa) + ")");
        long inFile = gpa >= fileSize ? 0 : Math.min(len, fileSize - gpa);
        long base = dst.address() + dstOffset;
        long done = 0;
        while (done < inFile) {
            long n = Libc.pread(fd, base + done, inFile - done, gpa + done);
            if (n == -1) {
                int errno = Libc.lastErrno();
                if (errno == Errno.EINTR) continue;
                throw new PageSourceException("page file " + file + ": pread of " + (inFile - done) + " bytes at offset 0x"
                        + Long.toHexString(gpa + done) + " failed: " + Errno.describe(errno));
            }
            if (n == 0) {
                throw new PageSourceException("page file " + file + ": unexpected end of file at offset 0x" + Long.toHexString(gpa + done)
                        + " (it had " + fileSize + " bytes when opened; was it truncated?)");
            }
            done += n;
        }
        if (inFile < len) dst.asSlice(dstOffset + inFile, len - inFile).fill((byte) 0);
    }

    @Override
    public boolean isZero(long gpa, long len) { return gpa >= fileSize; }

    @Override
    public String describe() { return "file " + file + " (" + fileSize + " bytes)"; }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.close(fd);
    }
}
