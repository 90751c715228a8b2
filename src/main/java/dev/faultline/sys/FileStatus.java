package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Path;

/**
 * A file opened for reading without following a final symbolic link (O_NOFOLLOW), and what fstat(2)
 * said of the descriptor itself (not of a path that may have changed since): for files a process
 * running as root must treat as hostile until checked.
 *
 * <p>{@code struct stat} (x86-64, 144 bytes), the fields used:
 * <pre>
 *  0 st_dev u64 | 8 st_ino u64 | 16 st_nlink u64 | 24 st_mode u32 | 28 st_uid u32 | 32 st_gid u32 | 48 st_size i64 | 88 st_mtime | 96 st_mtime_nsec
 * </pre>
 */
public record FileStatus(int fd, long device, long inode, int mode, int uid, long size, long mtimeNanos) {
    static final long SYS_FSTAT = 5;
    static final int O_NOFOLLOW = 0x20000;
    public static final int S_IFMT = 0170000, S_IFREG = 0100000;

    public boolean isRegularFile() { return (mode & S_IFMT) == S_IFREG; }

    /**
     * Opens {@code path} read-only, close-on-exec, O_NOFOLLOW, and fstats the descriptor.
     * @throws ErrnoException naming the call and the path (ELOOP: the path is a symbolic link)
     */
    public static FileStatus openReadOnly(Path path) {
        int fd = Libc.open(path.toString(), Libc.O_RDONLY | Libc.O_CLOEXEC | O_NOFOLLOW, 0);
        if (fd == -1) {
            int errno = Libc.lastErrno();
            throw new ErrnoException("open", errno, path + (errno == 40 ? " (a symbolic link: refused)" : ""));
        }
        try {
            return of(fd, path.toString());
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /** fstat(2) of an open descriptor. */
    public static FileStatus of(int fd, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment st = a.allocate(144, 8);
            MemorySegment capture = Libc.errnoSegment();
            if (Libc.sys(capture, SYS_FSTAT, fd, st.address(), 0) == -1) throw new ErrnoException("fstat", Libc.errno(capture), name);
            return new FileStatus(fd, st.get(ValueLayout.JAVA_LONG, 0), st.get(ValueLayout.JAVA_LONG, 8), st.get(ValueLayout.JAVA_INT, 24),
                    st.get(ValueLayout.JAVA_INT, 28), st.get(ValueLayout.JAVA_LONG, 48),
                    st.get(ValueLayout.JAVA_LONG, 88) * 1_000_000_000L + st.get(ValueLayout.JAVA_LONG, 96));
        }
    }
}
