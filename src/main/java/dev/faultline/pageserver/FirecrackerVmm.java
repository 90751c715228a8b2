package dev.faultline.pageserver;

import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Libc;
import dev.faultline.sys.UnixSocket;
import dev.faultline.sys.Userfaultfd;
import java.nio.file.Path;
import java.util.List;

/**
 * The VMM's side of the handshake, done as Firecracker does it (persist.rs {@code guest_memory_from_uffd},
 * {@code send_uffd_handshake}; shared/design/firecracker-uffd-protocol.md): one userfaultfd for every
 * region, made non-blocking and close-on-exec with kernel-mode faults delivered
 * ({@link Userfaultfd#openAsFirecracker}); UFFDIO_API with EVENT_REMOVE (always since v1.12; earlier only
 * with a balloon); each region registered whole, MISSING; one connect (no retry); one sendmsg of the
 * JSON with the userfaultfd as SCM_RIGHTS; then the socket is closed (before v1.12) or kept open and
 * never used again (v1.12+). The VMM keeps its own userfaultfd, so guest memory whose handler died
 * is not silently zero-filled.
 *
 * <p>Used by faultline's own lazy restore to hand its RAM to an external handler ({@code restore
 * --uffd-handler}), by the tests that play Firecracker against {@link PageServer}, and by {@code bench handler}.
 */
public final class FirecrackerVmm implements AutoCloseable {
    private final Userfaultfd uffd;
    private final UnixSocket socket;   // null once closed (before v1.12: right after the handshake)
    private final List<GuestRegionMapping> regions;
    private final FirecrackerVersion version;

    private FirecrackerVmm(Userfaultfd uffd, UnixSocket socket, List<GuestRegionMapping> regions, FirecrackerVersion version) {
        this.uffd = uffd;
        this.socket = socket;
        this.regions = regions;
        this.version = version;
    }

    /**
     * Registers {@code regions} (mapped by the caller; listed in the order the JSON gives them) with a
     * new userfaultfd and hands it to the handler listening on {@code socket}, as {@code version} does.
     * @param balloon the guest has a balloon device (before v1.12 EVENT_REMOVE was requested only then)
     * @throws ErrnoException for a refused system call (connect: ENOENT, ECONNREFUSED when no handler listens)
     */
    public static FirecrackerVmm handOff(Path socket, List<GuestRegionMapping> regions, FirecrackerVersion version, boolean balloon) {
        Userfaultfd u = Userfaultfd.openAsFirecracker();
        UnixSocket s = null;
        try {
            boolean remove = version == FirecrackerVersion.V1_12 || balloon;
            u.api(remove ? Userfaultfd.FEATURE_EVENT_REMOVE : 0);
            for (GuestRegionMapping r : regions) u.register(r.baseHostVirtAddr(), r.size(), Userfaultfd.REGISTER_MODE_MISSING);
            s = UnixSocket.connect(socket);
            s.send(Handshake.encode(regions, version), u.fd());   // a short send is ignored, as Firecracker ignores it
            if (!version.keepsSocketOpen()) {
                s.close();
                s = null;
            }
            return new FirecrackerVmm(u, s, List.copyOf(regions), version);
        } catch (RuntimeException e) {
            if (s != null) s.close();
            u.close();
            throw e;
        }
    }

    public Userfaultfd uffd() { return uffd; }
    public List<GuestRegionMapping> regions() { return regions; }
    public FirecrackerVersion version() { return version; }

    /**
     * Waits up to {@code timeoutMillis} for the handler to close its end of a kept-open socket (it failed
     * or ended). Always false before v1.12, whose socket is closed already.
     */
    public boolean handlerHungUp(int timeoutMillis) {
        if (socket == null || !socket.waitReadable(timeoutMillis)) return false;
        UnixSocket.Received r = socket.receive(16, 0);
        if (r == null) return false;
        r.closeFds();
        return r.bytes().length == 0;
    }

    /** The kept-open socket's descriptor (v1.12+), to poll for the handler's hang-up; -1 before v1.12. */
    public int socketFd() { return socket == null ? -1 : socket.fd(); }

    /**
     * Gives back [address, address + length) of guest memory as this version's balloon does:
     * madvise(MADV_DONTNEED) on the registered range (v1.11+: the handler gets a REMOVE first, and the
     * madvise waits for it to be read), or first an anonymous mapping put over it with MAP_FIXED
     * (before: the range leaves the userfaultfd, the handler hears nothing). The pages read as zeros
     * afterwards either way.
     */
    public void balloonRemove(long address, long length) {
        if (version.balloon() == FirecrackerVersion.Balloon.REMAP) {
            long a = Libc.mmap(address, length, Libc.PROT_READ | Libc.PROT_WRITE,
                    Libc.MAP_PRIVATE | Libc.MAP_ANONYMOUS | Libc.MAP_NORESERVE | Libc.MAP_FIXED, -1, 0);
            Libc.check(a, "mmap(MAP_FIXED|MAP_ANONYMOUS)", String.format("balloon range [0x%x, +0x%x)", address, length));
        }
        Libc.check(Libc.madvise(address, length, Libc.MADV_DONTNEED), "madvise(MADV_DONTNEED)",
                String.format("balloon range [0x%x, +0x%x)", address, length));
    }

    /** The VMM ends: its socket and its userfaultfd are closed (threads still waiting on a fault are released by the kernel). */
    @Override
    public void close() {
        if (socket != null) socket.close();
        uffd.close();
    }
}
