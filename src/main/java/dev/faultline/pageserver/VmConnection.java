package dev.faultline.pageserver;

import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSource;
import dev.faultline.paging.PageSourceException;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.WorkingSet;
import dev.faultline.paging.uffd.CopyInstaller;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Libc;
import dev.faultline.sys.UffdEvents;
import dev.faultline.sys.UnixSocket;
import dev.faultline.sys.Userfaultfd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * One VM served: the VMM's userfaultfd, the regions of its handshake, and one handler thread that
 * serves every fault of it through a {@link FaultCore} over the VM's space of file offsets [0, total)
 * (one lane per region, so no install crosses a region; exactly-once installs, readahead or replay,
 * first-touch recording as in faultline's own restores).
 *
 * <p>The thread sleeps in poll(2) on the userfaultfd, a pidfd of the VMM process (readable when it
 * has exited), the socket when the VMM keeps it open (v1.12+: its hang-up means the VMM is gone) and
 * an eventfd that {@link #stop} rings. Per turn it reads up to 64 events and applies every REMOVE of
 * the batch before it serves the batch's faults (a fault read beside the REMOVE that covers it is
 * served with zeros); an install that meets EAGAIN (a REMOVE not read yet) is kept, events are read,
 * and it is retried. Faults go before background prefetch, one chunk of which runs between reads.
 * A failure (a source error, an errno the protocol does not explain, a fault outside every region)
 * ends the connection and is reported ({@link Listener#failed}); nothing is made up instead.
 */
final class VmConnection implements Runnable {
    /** What the server learns from a connection. */
    interface Listener {
        /** The connection failed; {@code message} is one line. Called on the connection's thread before it releases anything. */
        void failed(VmConnection c, String message);

        /** The first {@code recordMillis} of a recording connection are over (or it ended first): its first touches. */
        void recorded(VmConnection c, WorkingSet set);

        /** The connection ended (after {@link #failed} if it failed); its statistics are final. */
        void ended(VmConnection c);
    }

    private static final int EVENTS = 64, RETRIES = 256;

    final String id;
    final UnixSocket.PeerCredentials peer;
    final Handshake handshake;
    final FaultCore core;
    private final UnixSocket socket;
    private final Userfaultfd uffd;
    private final Userfaultfd.Caller caller = new Userfaultfd.Caller();
    private final UffdEvents events = new UffdEvents(EVENTS);
    private final RemovedPages source;
    private final FaultCore.Lane[] lanes;
    private final RegionInstaller[] installers;
    private final long[] hostBase, hostEnd, fileOffset;
    private final int[] laneOfHost;
    private final int pidfd, stopFd;
    private final boolean watchSocket;
    private final Listener listener;
    private final MemorySegment pollfds = Arena.ofAuto().allocate(32, 8);
    private final MemorySegment eventfdValue = Arena.ofAuto().allocate(8, 8);
    private final long[] retryOffset = new long[RETRIES];
    private final int[] retryLane = new int[RETRIES];
    private int retries;
    private final long recordNanos;
    private boolean recordDelivered;
    final long startedNanos = System.nanoTime();
    volatile long firstFaultNanos, endedNanos;
    private volatile boolean stopping;
    private volatile String failure, endReason = "running";

    /**
     * @param file         the memory file (shared by every connection)
     * @param recordMillis record first touches for this long (0: not recording)
     */
    VmConnection(String id, UnixSocket socket, UnixSocket.PeerCredentials peer, Userfaultfd uffd, Handshake handshake, PageSource file,
                 Prefetch prefetch, long recordMillis, Listener listener) {
        this.id = id;
        this.socket = socket;
        this.peer = peer;
        this.uffd = uffd;
        this.handshake = handshake;
        this.listener = listener;
        long total = handshake.totalBytes();
        this.source = new RemovedPages(file, total);
        this.core = new FaultCore(source, 0, total, 0, prefetch, recordMillis > 0);
        this.recordNanos = recordMillis * 1_000_000L;
        if (recordMillis > 0) core.recordFor(recordNanos);
        int n = handshake.regions().size();
        lanes = new FaultCore.Lane[n];
        installers = new RegionInstaller[n];
        for (int i = 0; i < n; i++) {
            GuestRegionMapping r = handshake.regions().get(i);
            installers[i] = new RegionInstaller(new CopyInstaller(uffd, caller, prefetch.maxRunPages(), core.zeros(),
                    r.baseHostVirtAddr() - r.offset(), false));
            lanes[i] = core.newLane(id + "-region-" + i, r.offset(), r.offset() + r.size(), installers[i]);
        }
        // host ranges in address order, for the lookup of each fault
        Integer[] order = new Integer[n];
        for (int i = 0; i < n; i++) order[i] = i;
        java.util.Arrays.sort(order, (a, b) -> Long.compare(handshake.regions().get(a).baseHostVirtAddr(), handshake.regions().get(b).baseHostVirtAddr()));
        hostBase = new long[n];
        hostEnd = new long[n];
        fileOffset = new long[n];
        laneOfHost = new int[n];
        for (int k = 0; k < n; k++) {
            GuestRegionMapping r = handshake.regions().get(order[k]);
            hostBase[k] = r.baseHostVirtAddr();
            hostEnd[k] = r.endHostVirtAddr();
            fileOffset[k] = r.offset();
            laneOfHost[k] = order[k];
        }
        int pf = peer.pid() > 0 && peer.pid() != ProcessHandle.current().pid() ? dev.faultline.sys.Processes.pidfdOpen(peer.pid()) : -1;
        this.pidfd = pf;
        this.stopFd = Libc.check(Libc.eventfd(0, Libc.EFD_CLOEXEC | Libc.EFD_NONBLOCK), "eventfd", "stop signal of " + id);
        this.watchSocket = handshake.shape().keepsSocketOpen();
    }

    /** Why the connection ended ("running" while it runs): "peer exited", "peer closed the socket", "stopped", or the failure. */
    String endReason() { return endReason; }
    String failure() { return failure; }
    /** Pages a REMOVE made read as zeros. */
    long removedPages() { return source.removedPages(); }
    /** Pages whose range the VMM had unmapped or remapped when they were served (ENOENT): nothing installed there. */
    long unmappedPages() {
        long n = 0;
        for (RegionInstaller i : installers) n += i.unmappedPages;
        return n;
    }

    /** Asks the thread to stop (any thread, any number of times); it notices at once, even asleep in poll(). */
    void stop() {
        stopping = true;
        MemorySegment one = Arena.ofAuto().allocate(8, 8);
        one.set(ValueLayout.JAVA_LONG, 0, 1);
        Libc.write(Libc.errnoSegment(), stopFd, one, 8);
    }

    @Override
    public void run() {
        try {
            serve();
        } catch (PageSourceException | ErrnoException | IllegalStateException | IllegalArgumentException e) {
            failure = e.getMessage();
            endReason = "failed";
            listener.failed(this, e.getMessage());
        } finally {
            endedNanos = System.nanoTime();
            if (!recordDelivered && recordNanos > 0) deliverRecording();
            socket.shutdown();
            socket.close();
            uffd.close();
            if (pidfd >= 0) Libc.close(pidfd);
            Libc.close(stopFd);
            listener.ended(this);
        }
    }

    private void serve() {
        while (!stopping) {
            // each turn is a method of its own: the JIT compiles it as any hot method, where a loop that
            // never returns could only be compiled on-stack, late (docs/paging.md)
            turn();
        }
    }

    /** Reads and serves what is pending, retries, one chunk of prefetch; else sleeps in poll(). */
    private void turn() {
        int n = uffd.readEvents(caller, events);
        if (n > 0) {
            if (firstFaultNanos == 0) firstFaultNanos = System.nanoTime();
            handleBatch(n);
            if (n == EVENTS) return;   // more may be queued
        }
        if (retries > 0) {
            retryPending();
            if (retries > 0) sleep(1);   // a REMOVE is still being delivered: let it finish
            return;
        }
        if (recordNanos > 0 && !recordDelivered && System.nanoTime() - startedNanos >= recordNanos) deliverRecording();
        if (prefetchStep()) return;
        sleep(timeout());
    }

    /** How long poll() may sleep: until the recording window ends, else for ever. */
    private int timeout() {
        if (recordNanos == 0 || recordDelivered) return -1;
        long left = recordNanos - (System.nanoTime() - startedNanos);
        return (int) Math.max(1, Math.min(1000, left / 1_000_000 + 1));
    }

    private boolean prefetchStep() {
        for (FaultCore.Lane l : lanes) {
            if (core.hasPrefetchWork(l) && core.prefetchStep(l) > 0) return true;
        }
        return false;
    }

    private void handleBatch(int n) {
        for (int i = 0; i < n; i++) {   // REMOVEs first: a fault read beside the REMOVE that covers it is served with zeros
            if (events.event(i) == Userfaultfd.EVENT_REMOVE) remove(events.removeStart(i), events.removeEnd(i));
        }
        for (int i = 0; i < n; i++) {
            if (events.event(i) != Userfaultfd.EVENT_PAGEFAULT) continue;
            long hva = events.pagefaultAddress(i) & -Handshake.PAGE;
            int k = hostIndex(hva);
            if (k < 0) throw new IllegalStateException(String.format("VM %s faulted at 0x%x, outside every region of its handshake", id, hva));
            serve(laneOfHost[k], hva - hostBase[k] + fileOffset[k]);
        }
    }

    private int hostIndex(long hva) {
        int lo = 0, hi = hostBase.length - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (hva < hostBase[mid]) hi = mid - 1;
            else if (hva >= hostEnd[mid]) lo = mid + 1;
            else return mid;
        }
        return -1;
    }

    /** The VMM dropped [start, end) of its memory: those pages read as zeros from now on. */
    private void remove(long start, long end) {
        for (int k = 0; k < hostBase.length; k++) {
            long from = Math.max(start, hostBase[k]), to = Math.min(end, hostEnd[k]);
            if (from >= to) continue;
            long off = from - hostBase[k] + fileOffset[k];
            source.remove(off, to - from);
            core.invalidate(off, to - from);
            lanes[laneOfHost[k]].stats().countRemove((to - from) / Handshake.PAGE);
        }
    }

    private void serve(int lane, long offset) {
        int r = core.serveFault(lanes[lane], -1, offset);
        if (r == FaultCore.RETRY) {
            if (retries == RETRIES) throw new IllegalStateException("VM " + id + ": more than " + RETRIES + " faults wait for a retry after EAGAIN");
            retryOffset[retries] = offset;
            retryLane[retries++] = lane;
        } else if (r == FaultCore.GONE) {
            endReason = "peer's address space is gone";
            stopping = true;
        }
    }

    private void retryPending() {
        int n = retries;
        retries = 0;
        int k = uffd.readEvents(caller, events);   // a pending REMOVE must be read before a retry can succeed
        if (k > 0) handleBatch(k);
        for (int i = 0; i < n && !stopping; i++) serve(retryLane[i], retryOffset[i]);
    }

    /** poll() on the userfaultfd, the peer's pidfd, the socket (kept open by v1.12+) and the stop eventfd. */
    private void sleep(int timeoutMillis) {
        MemorySegment p = pollfds;
        set(p, 0, uffd.fd());
        set(p, 1, pidfd);
        set(p, 2, watchSocket ? socket.fd() : -1);
        set(p, 3, stopFd);
        int r = Libc.poll(Libc.errnoSegment(), p, 4, timeoutMillis);
        if (r <= 0) return;
        if (revents(p, 3) != 0) stopping = true;
        if (revents(p, 1) != 0) {
            endReason = "peer exited";
            stopping = true;
        }
        if (revents(p, 2) != 0) socketActivity();
        if ((revents(p, 0) & (Libc.POLLERR | Libc.POLLHUP | Libc.POLLNVAL)) != 0) {
            endReason = "userfaultfd hung up";
            stopping = true;
        }
    }

    /** The VMM wrote to or closed a socket it keeps open: closing means it is gone; writing is outside the protocol. */
    private void socketActivity() {
        UnixSocket.Received got = socket.receive(64, 0);
        if (got == null) return;
        got.closeFds();
        if (got.bytes().length == 0 && got.fds().length == 0) {
            endReason = "peer closed the socket";
            stopping = true;
            return;
        }
        throw new IllegalStateException("VM " + id + " sent " + got.bytes().length + " more bytes after its handshake (Firecracker sends one message only)");
    }

    private static void set(MemorySegment p, int i, int fd) {
        p.set(ValueLayout.JAVA_INT, 8L * i, fd);
        p.set(ValueLayout.JAVA_SHORT, 8L * i + 4, Libc.POLLIN);
        p.set(ValueLayout.JAVA_SHORT, 8L * i + 6, (short) 0);
    }

    private static int revents(MemorySegment p, int i) {
        return p.get(ValueLayout.JAVA_SHORT, 8L * i + 6);
    }

    private void deliverRecording() {
        recordDelivered = true;
        listener.recorded(this, core.recordedWorkingSet());
    }

    /** Ends a stopping connection's end reason as "stopped" when nothing else ended it. */
    void markStoppedByServer() {
        if (endReason.equals("running")) endReason = "stopped";
    }
}
