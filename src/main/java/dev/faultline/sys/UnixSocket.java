package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;

/**
 * A stream Unix socket (AF_UNIX, SOCK_STREAM, close-on-exec) driven through system calls, for what
 * the JDK's channels cannot do: pass file descriptors (SCM_RIGHTS, in the same sendmsg as the bytes)
 * and read the peer's credentials (SO_PEERCRED). Firecracker hands its userfaultfd to a page-fault
 * handler this way (docs/pageserver.md).
 *
 * <p>Layouts (x86-64): {@code struct sockaddr_un} is a u16 family and 108 bytes of path;
 * {@code struct msghdr} and {@code struct cmsghdr}:
 * <pre>
 *  msghdr   0 msg_name | 8 msg_namelen u32 | 16 msg_iov | 24 msg_iovlen | 32 msg_control | 40 msg_controllen | 48 msg_flags i32 | 56
 *  cmsghdr  0 cmsg_len u64 | 8 cmsg_level i32 | 12 cmsg_type i32 | 16 data (fds, i32 each), padded to 8
 *  ucred    0 pid i32 | 4 uid u32 | 8 gid u32 | 12
 * </pre>
 * Threading: one thread uses a socket at a time (a set-up path, not a fault path: calls allocate).
 */
public final class UnixSocket implements AutoCloseable {
    static final long SYS_SOCKET = 41, SYS_CONNECT = 42, SYS_ACCEPT4 = 288, SYS_SENDMSG = 46, SYS_RECVMSG = 47, SYS_SHUTDOWN = 48,
            SYS_BIND = 49, SYS_LISTEN = 50, SYS_GETSOCKOPT = 55;
    static final int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000, SOL_SOCKET = 1, SCM_RIGHTS = 1, SO_PEERCRED = 17;
    static final int MSG_NOSIGNAL = 0x4000, MSG_CMSG_CLOEXEC = 0x40000000, MSG_CTRUNC = 0x8, MSG_DONTWAIT = 0x40;
    /** sun_path holds 108 bytes with the terminating NUL. */
    public static final int MAX_PATH = 107;
    private static final long SOCKADDR_UN_SIZE = 110, MSGHDR_SIZE = 56, CMSG_HEADER = 16;
    /** Most descriptors one receive accepts (Firecracker's guest_memfd mode sends 3; main sends 1). */
    public static final int MAX_FDS = 8;

    /** The peer's process, user and group at connect time (SO_PEERCRED). pid 0: unknown (another pid namespace). */
    public record PeerCredentials(int pid, int uid, int gid) {}

    /**
     * What one {@link #receive} read: the bytes, the descriptors that came with them (now owned by the
     * caller, close-on-exec), and whether the kernel had to drop descriptors (MSG_CTRUNC).
     */
    public record Received(byte[] bytes, int[] fds, boolean fdsTruncated) {
        /** Closes every received descriptor (after a refusal). */
        public void closeFds() {
            for (int fd : fds) Libc.close(fd);
        }
    }

    private final int fd;
    private final String name;
    private volatile boolean closed;

    private UnixSocket(int fd, String name) {
        this.fd = fd;
        this.name = name;
    }

    public int fd() { return fd; }

    /** A new unbound socket. */
    private static int newSocket() {
        MemorySegment capture = Libc.errnoSegment();
        long fd = Libc.sys(capture, SYS_SOCKET, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd == -1) throw new ErrnoException("socket", Libc.errno(capture), "AF_UNIX, SOCK_STREAM");
        return (int) fd;
    }

    private static MemorySegment sockaddr(Arena a, Path path) {
        byte[] p = path.toString().getBytes(StandardCharsets.UTF_8);
        if (p.length > MAX_PATH) {
            throw new IllegalArgumentException("the socket path " + path + " is " + p.length + " bytes long; a Unix socket's path holds at most "
                    + MAX_PATH + " (sun_path)");
        }
        MemorySegment s = a.allocate(SOCKADDR_UN_SIZE, 8);
        s.set(ValueLayout.JAVA_SHORT, 0, (short) AF_UNIX);
        MemorySegment.copy(p, 0, s, ValueLayout.JAVA_BYTE, 2, p.length);
        return s;
    }

    /**
     * Binds a new socket at {@code path} (which must not exist) and listens. The file gets the mode the
     * process's umask leaves; callers that need 0600 bind inside a private directory first
     * (dev.faultline.pageserver does).
     */
    public static UnixSocket listen(Path path, int backlog) {
        int fd = newSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = Libc.errnoSegment();
            if (Libc.sys(capture, SYS_BIND, fd, sockaddr(a, path).address(), SOCKADDR_UN_SIZE) == -1) {
                throw new ErrnoException("bind", Libc.errno(capture), path.toString());
            }
            if (Libc.sys(capture, SYS_LISTEN, fd, backlog, 0) == -1) throw new ErrnoException("listen", Libc.errno(capture), path.toString());
            return new UnixSocket(fd, path.toString());
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /** Connects to the socket at {@code path}, once (as Firecracker does: no retry). */
    public static UnixSocket connect(Path path) {
        int fd = newSocket();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment capture = Libc.errnoSegment();
            long r;
            do {
                r = Libc.sys(capture, SYS_CONNECT, fd, sockaddr(a, path).address(), SOCKADDR_UN_SIZE);
            } while (r == -1 && Libc.errno(capture) == Errno.EINTR);
            if (r == -1) throw new ErrnoException("connect", Libc.errno(capture), path.toString());
            return new UnixSocket(fd, path.toString());
        } catch (RuntimeException e) {
            Libc.close(fd);
            throw e;
        }
    }

    /**
     * Waits up to {@code timeoutMillis} (-1: forever) for a connection and accepts it (close-on-exec).
     * @return the connection, or null on timeout or EINTR
     */
    public UnixSocket accept(int timeoutMillis) {
        if (!waitReadable(timeoutMillis)) return null;
        MemorySegment capture = Libc.errnoSegment();
        long c = Libc.sys(capture, SYS_ACCEPT4, fd, 0, 0, SOCK_CLOEXEC, 0, 0);
        if (c == -1) {
            int errno = Libc.errno(capture);
            if (errno == Errno.EINTR || errno == Errno.EAGAIN || errno == ECONNABORTED) return null;
            throw new ErrnoException("accept4", errno, name);
        }
        return new UnixSocket((int) c, name + " (connection)");
    }

    static final int ECONNABORTED = 103;

    /** The connected peer's credentials (SO_PEERCRED): read before anything else is read from it. */
    public PeerCredentials peer() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment cred = a.allocate(12, 4);
            MemorySegment len = a.allocate(ValueLayout.JAVA_INT);
            len.set(ValueLayout.JAVA_INT, 0, 12);
            MemorySegment capture = Libc.errnoSegment();
            if (Libc.sys(capture, SYS_GETSOCKOPT, fd, SOL_SOCKET, SO_PEERCRED, cred.address(), len.address(), 0) == -1) {
                throw new ErrnoException("getsockopt(SO_PEERCRED)", Libc.errno(capture), name);
            }
            return new PeerCredentials(cred.get(ValueLayout.JAVA_INT, 0), cred.get(ValueLayout.JAVA_INT, 4), cred.get(ValueLayout.JAVA_INT, 8));
        }
    }

    /**
     * One sendmsg(2) of {@code data} with {@code fds} attached as one SCM_RIGHTS control message
     * (MSG_NOSIGNAL: a closed peer is EPIPE, not a signal). Returns the bytes sent (possibly fewer).
     */
    public long send(byte[] data, int... fds) {
        if (fds.length > MAX_FDS) throw new IllegalArgumentException("at most " + MAX_FDS + " descriptors per message, not " + fds.length);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(Math.max(1, data.length));
            MemorySegment.copy(data, 0, buf, ValueLayout.JAVA_BYTE, 0, data.length);
            MemorySegment iov = a.allocate(IovecLayout.SIZE, 8);
            iov.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, buf.address());
            iov.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, data.length);
            MemorySegment msg = a.allocate(MSGHDR_SIZE, 8);
            msg.set(ValueLayout.JAVA_LONG, 16, iov.address());
            msg.set(ValueLayout.JAVA_LONG, 24, 1);
            if (fds.length > 0) {
                long space = cmsgSpace(fds.length);
                MemorySegment ctl = a.allocate(space, 8);
                ctl.set(ValueLayout.JAVA_LONG, 0, CMSG_HEADER + 4L * fds.length);
                ctl.set(ValueLayout.JAVA_INT, 8, SOL_SOCKET);
                ctl.set(ValueLayout.JAVA_INT, 12, SCM_RIGHTS);
                for (int i = 0; i < fds.length; i++) ctl.set(ValueLayout.JAVA_INT, CMSG_HEADER + 4L * i, fds[i]);
                msg.set(ValueLayout.JAVA_LONG, 32, ctl.address());
                msg.set(ValueLayout.JAVA_LONG, 40, space);
            }
            MemorySegment capture = Libc.errnoSegment();
            long n;
            do {
                n = Libc.sys(capture, SYS_SENDMSG, fd, msg.address(), MSG_NOSIGNAL);
            } while (n == -1 && Libc.errno(capture) == Errno.EINTR);
            if (n == -1) throw new ErrnoException("sendmsg", Libc.errno(capture), name);
            return n;
        }
    }

    private static long cmsgSpace(int fds) {
        return CMSG_HEADER + ((4L * fds + 7) & ~7L);
    }

    /**
     * Waits up to {@code timeoutMillis} for data, then one recvmsg(2) of at most {@code maxBytes} bytes and
     * {@link #MAX_FDS} descriptors (received close-on-exec).
     * @return what was read (zero bytes and no fds: the peer closed), or null on timeout
     */
    public Received receive(int maxBytes, int timeoutMillis) {
        if (!waitReadable(timeoutMillis)) return null;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment buf = a.allocate(maxBytes);
            MemorySegment iov = a.allocate(IovecLayout.SIZE, 8);
            iov.set(ValueLayout.JAVA_LONG, IovecLayout.BASE, buf.address());
            iov.set(ValueLayout.JAVA_LONG, IovecLayout.LEN, maxBytes);
            long space = cmsgSpace(MAX_FDS);
            MemorySegment ctl = a.allocate(space, 8);
            MemorySegment msg = a.allocate(MSGHDR_SIZE, 8);
            msg.set(ValueLayout.JAVA_LONG, 16, iov.address());
            msg.set(ValueLayout.JAVA_LONG, 24, 1);
            msg.set(ValueLayout.JAVA_LONG, 32, ctl.address());
            msg.set(ValueLayout.JAVA_LONG, 40, space);
            MemorySegment capture = Libc.errnoSegment();
            long n;
            do {
                n = Libc.sys(capture, SYS_RECVMSG, fd, msg.address(), MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
            } while (n == -1 && Libc.errno(capture) == Errno.EINTR);
            if (n == -1) {
                if (Libc.errno(capture) == Errno.EAGAIN) return null;
                throw new ErrnoException("recvmsg", Libc.errno(capture), name);
            }
            int flags = msg.get(ValueLayout.JAVA_INT, 48);
            long ctlLen = msg.get(ValueLayout.JAVA_LONG, 40);
            int[] fds = new int[0];
            long off = 0;
            while (off + CMSG_HEADER <= ctlLen) {   // every control message: collect SCM_RIGHTS descriptors
                long len = ctl.get(ValueLayout.JAVA_LONG, off);
                if (len < CMSG_HEADER || off + len > ctlLen) break;
                if (ctl.get(ValueLayout.JAVA_INT, off + 8) == SOL_SOCKET && ctl.get(ValueLayout.JAVA_INT, off + 12) == SCM_RIGHTS) {
                    int k = (int) ((len - CMSG_HEADER) / 4);
                    int[] more = java.util.Arrays.copyOf(fds, fds.length + k);
                    for (int i = 0; i < k; i++) more[fds.length + i] = ctl.get(ValueLayout.JAVA_INT, off + CMSG_HEADER + 4L * i);
                    fds = more;
                }
                off += (len + 7) & ~7L;
            }
            return new Received(buf.asSlice(0, n).toArray(ValueLayout.JAVA_BYTE), fds, (flags & MSG_CTRUNC) != 0);
        }
    }

    /** Waits up to {@code timeoutMillis} (-1: forever) for the socket to be readable (or hung up). False on timeout. */
    public boolean waitReadable(int timeoutMillis) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(8, 8);
            p.set(ValueLayout.JAVA_INT, 0, fd);
            p.set(ValueLayout.JAVA_SHORT, 4, Libc.POLLIN);
            MemorySegment capture = Libc.errnoSegment();
            int r = Libc.poll(capture, p, 1, timeoutMillis);
            if (r == -1 && Libc.errno(capture) != Errno.EINTR) throw new ErrnoException("poll", Libc.errno(capture), name);
            return r > 0;
        }
    }

    /** shutdown(2) of both directions: the peer reads end of file at once (even while this process keeps the descriptor). */
    public void shutdown() {
        Libc.sys(Libc.errnoSegment(), SYS_SHUTDOWN, fd, 2, 0);
    }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        Libc.close(fd);
    }

    @Override
    public String toString() { return "unix socket " + name; }
}
