package dev.faultline.pageserver;

import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSource;
import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.WorkingSet;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Processes;
import dev.faultline.sys.UnixSocket;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.telemetry.EventLog;
import dev.faultline.telemetry.PagingMetrics;
import dev.faultline.vmm.ThreadPriority;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;

/**
 * A page-fault handler for VMMs that restore guests lazily the way Firecracker does (its "Uffd"
 * memory backend): it listens on a stream Unix socket; each VMM connects once and sends one message,
 * a JSON array of its guest regions with its userfaultfd attached (SCM_RIGHTS), and from then on every
 * first touch of that guest's memory is served from the memory file by this process
 * (docs/pageserver.md). Many VMs at once, one connection and one handler thread each, all sharing one
 * mapping (so one page cache) of the memory file.
 *
 * <p>Before anything is read from a connection its peer's credentials are checked (SO_PEERCRED: a uid
 * in {@link Config#allowedUids}); the handshake is bounded in bytes, descriptors and time and checked
 * whole ({@link Handshake#parse}; the regions must lie inside the memory file; the descriptor must be
 * a userfaultfd). A refused or failed connection is reported (log, event) and closed; what more
 * happens is {@link OnFailure}.
 */
public final class PageServer implements AutoCloseable {
    /** What a VM's failure does besides closing its connection and reporting it. */
    public enum OnFailure {
        /** Nothing more: the VMM's guest waits on its next missing page (the VMM keeps its userfaultfd open). */
        CLOSE,
        /** SIGKILL the VMM process (SO_PEERCRED's pid), as Firecracker's example handlers do: the orchestrator sees it die. */
        KILL,
        /** End the whole handler ({@link #awaitEnd} returns false): every VMM it served sees it gone. */
        EXIT
    }

    /**
     * @param socket        where to listen (made 0600 in a directory only its user may write: {@link ListeningSocket})
     * @param allowedUids   peers whose uid is not here are refused before anything is read
     * @param maxVms        connections served at once; more are refused
     * @param file          the memory file, shared by every VM
     * @param prefetch      per VM: none, readahead, or replay of a working set (in file offsets)
     * @param recordTo      write the first VM's first touches here (null: no recording)
     * @param recordMillis  the recording window from the VM's handshake (0: its whole life)
     * @param handshakeMillis how long a connection may take to send its handshake
     * @param metrics       where each VM is scraped while it is served (its figures join the totals when it ends)
     * @param scheduling    how each VM's handler thread is scheduled (nice -5 by default: a woken handler does not
     *     queue behind other work on its CPU, docs/paging.md); refused (EPERM), the thread runs normally and the log says so
     */
    public record Config(Path socket, Set<Integer> allowedUids, int maxVms, PageSource file, long fileBytes, Prefetch prefetch, Path recordTo,
                         long recordMillis, OnFailure onFailure, int handshakeMillis, EventLog events, PagingMetrics metrics, Consumer<String> log,
                         ThreadPriority scheduling) {
        public Config {
            if (maxVms < 1) throw new IllegalArgumentException("at least one VM must be allowed, not " + maxVms);
            if (handshakeMillis < 1) throw new IllegalArgumentException("the handshake timeout must be positive, not " + handshakeMillis + " ms");
            if (recordMillis < 0) throw new IllegalArgumentException("the recording window must be 0 (whole life) or positive, not " + recordMillis);
            allowedUids = Set.copyOf(allowedUids);
            if (prefetch == null) prefetch = Prefetch.NONE;
            if (onFailure == null) onFailure = OnFailure.CLOSE;
            if (events == null) events = EventLog.NONE;
            if (metrics == null) metrics = new PagingMetrics();
            if (log == null) log = line -> { };
            if (scheduling == null) scheduling = DEFAULT_SCHEDULING;
        }

        /** ... with handler threads at {@link #DEFAULT_SCHEDULING}. */
        public Config(Path socket, Set<Integer> allowedUids, int maxVms, PageSource file, long fileBytes, Prefetch prefetch, Path recordTo,
                      long recordMillis, OnFailure onFailure, int handshakeMillis, EventLog events, PagingMetrics metrics, Consumer<String> log) {
            this(socket, allowedUids, maxVms, file, fileBytes, prefetch, recordTo, recordMillis, onFailure, handshakeMillis, events, metrics, log, null);
        }
    }

    /** Handler threads at nice -5, as faultline's own handlers that sleep waiting for faults (docs/paging.md). */
    public static final ThreadPriority DEFAULT_SCHEDULING = ThreadPriority.nice(-5);

    private final Config config;
    private final UnixSocket listener;
    private volatile boolean schedulingRefusalLogged;
    private final Thread acceptThread;
    private final Set<VmConnection> live = ConcurrentHashMap.newKeySet();
    private final List<VmConnection> ended = new ArrayList<>();
    private final AtomicLong connections = new AtomicLong(), refused = new AtomicLong(), failures = new AtomicLong();
    private final java.util.concurrent.atomic.AtomicInteger slots = new java.util.concurrent.atomic.AtomicInteger();
    private final AtomicReference<String> fatal = new AtomicReference<>();
    private final CountDownLatch end = new CountDownLatch(1);
    private volatile boolean closed, recordingTaken;
    private final List<Consumer<VmConnection>> endWatchers = new java.util.concurrent.CopyOnWriteArrayList<>();

    private PageServer(Config config, UnixSocket listener) {
        this.config = config;
        this.listener = listener;
        this.acceptThread = Thread.ofPlatform().name("uffd-handler-accept").daemon().unstarted(this::acceptLoop);
    }

    /**
     * Listens on {@code config.socket()} and starts accepting.
     * @throws IllegalArgumentException one line for an unusable socket path
     */
    public static PageServer start(Config config) {
        PageServer s = new PageServer(config, ListeningSocket.open(config.socket()));
        s.acceptThread.start();
        config.events().emit("listening", "socket", config.socket().toString(), "memory_file", config.file().describe(),
                "prefetch", Prefetch.describe(config.prefetch()));
        return s;
    }

    public Path socket() { return config.socket(); }
    public long connectionsAccepted() { return connections.get(); }
    public long connectionsRefused() { return refused.get(); }
    public long failures() { return failures.get(); }

    /** The VMs being served now. */
    public List<VmView> liveVms() {
        List<VmView> l = new ArrayList<>();
        for (VmConnection c : live) l.add(new VmView(c));
        return l;
    }

    /** The VMs served and ended (their statistics final), oldest first; at most the last 1024. */
    public synchronized List<VmView> endedVms() {
        return ended.stream().map(VmView::new).toList();
    }

    /** Called with each VM whose connection ended (on that VM's thread). */
    public void onVmEnded(Consumer<VmView> watcher) {
        endWatchers.add(c -> watcher.accept(new VmView(c)));
    }

    /** What the server shows of one VM: its id, peer, regions and paging core (read-only use: statistics). */
    public static final class VmView implements PagingMetrics.Subject {
        private final VmConnection c;

        VmView(VmConnection c) { this.c = c; }

        @Override public String name() { return c.id; }
        @Override public boolean equals(Object o) { return o instanceof VmView v && v.c == c; }
        @Override public int hashCode() { return System.identityHashCode(c); }

        public String id() { return c.id; }
        public UnixSocket.PeerCredentials peer() { return c.peer; }
        public Handshake handshake() { return c.handshake; }
        @Override public FaultCore core() { return c.core; }
        public String endReason() { return c.endReason(); }
        public String failure() { return c.failure(); }
        public long removedPages() { return c.removedPages(); }
        public long unmappedPages() { return c.unmappedPages(); }
        /** Nanoseconds from the handshake to the first fault event (0: none yet). */
        public long firstFaultNanos() { return c.firstFaultNanos == 0 ? 0 : c.firstFaultNanos - c.startedNanos; }
    }

    /** Waits up to {@code timeout} for the server to end ({@link #close()}, or a failure under {@link OnFailure#EXIT}); true if it ended. */
    public boolean awaitEnd(long timeout, TimeUnit unit) throws InterruptedException {
        return end.await(timeout, unit);
    }

    /** Blocks until the server ends; true when closed, false after a failure under {@link OnFailure#EXIT}. */
    public boolean awaitEnd() throws InterruptedException {
        end.await();
        return fatal.get() == null;
    }

    /** The failure that ended the server ({@link OnFailure#EXIT}), or null. */
    public String fatalFailure() { return fatal.get(); }

    private void acceptLoop() {
        long n = 0;
        while (!closed) {
            UnixSocket c;
            try {
                c = listener.accept(200);
            } catch (ErrnoException e) {
                if (!closed) config.log().accept("accept failed: " + e.getMessage());
                if (!closed) failures.incrementAndGet();
                return;
            }
            if (c == null) continue;
            String id = "vm-" + ++n;
            if (slots.incrementAndGet() > config.maxVms()) {   // connections being admitted or served: bounded, so are their threads
                slots.decrementAndGet();
                refuse(id, c, null, "already serving " + config.maxVms() + " VMs (--max-vms)");
                continue;
            }
            Thread.ofPlatform().name("uffd-handler-" + id).daemon().start(() -> {
                try {
                    admit(id, c);
                } finally {
                    slots.decrementAndGet();
                }
            });
        }
    }

    /** A new connection, on its own thread: credentials, handshake, checks; then it is served on this thread. */
    private void admit(String id, UnixSocket c) {
        UnixSocket.PeerCredentials peer;
        try {
            peer = c.peer();
        } catch (ErrnoException e) {
            refuse(id, c, null, "its credentials cannot be read: " + e.getMessage());
            return;
        }
        if (!config.allowedUids().contains(peer.uid())) {
            refuse(id, c, peer, "its uid " + peer.uid() + " is not allowed (--allow-uid)");
            return;
        }
        UnixSocket.Received got;
        Handshake h;
        try {
            got = receiveHandshake(c);
            h = checkHandshake(got);
        } catch (Handshake.HandshakeException | ErrnoException e) {
            refuse(id, c, peer, e.getMessage());
            return;
        }
        VmConnection vm;
        try {
            vm = new VmConnection(id, c, peer, Userfaultfd.adopt(got.fds()[0]), h, config.file(), prefetchFor(id, h), recordingFor(), listener(id));
        } catch (RuntimeException e) {
            got.closeFds();
            refuse(id, c, peer, "cannot be served: " + e.getMessage());
            return;
        }
        connections.incrementAndGet();
        live.add(vm);
        config.metrics().add(new VmView(vm));
        if (closed) vm.stop();
        config.log().accept(String.format("%s: pid %d uid %d, %d regions (%d MiB), handshake as Firecracker %s", id, peer.pid(), peer.uid(),
                h.regions().size(), h.totalBytes() >> 20, h.shape().label()));
        config.events().emit("connection", "vm", id, "peer_pid", peer.pid(), "peer_uid", peer.uid(), "regions", h.regions().size(),
                "bytes", h.totalBytes(), "handshake", h.shape().label());
        int errno = config.scheduling().applyToCurrentThread();
        if (errno != 0 && !schedulingRefusalLogged) {
            schedulingRefusalLogged = true;
            config.log().accept("handler threads run unprioritised: " + config.scheduling() + " refused: " + dev.faultline.sys.Errno.describe(errno));
        }
        vm.run();
    }

    private Prefetch prefetchFor(String id, Handshake h) {
        if (config.prefetch() instanceof Prefetch.Replay r && r.order().spaceBytes() != h.totalBytes()) {
            String why = "the working set was recorded for " + r.order().spaceBytes() + " bytes of memory, this VM has " + h.totalBytes()
                    + ": served without replay";
            config.log().accept(id + ": " + why);
            config.events().emit("replay_skipped", "vm", id, "reason", why);
            return Prefetch.NONE;
        }
        return config.prefetch();
    }

    private synchronized long recordingFor() {
        if (config.recordTo() == null || recordingTaken) return 0;
        recordingTaken = true;
        return config.recordMillis() == 0 ? Long.MAX_VALUE / 2_000_000 : config.recordMillis();
    }

    /** One message (more receives while its JSON array is incomplete), bounded in bytes and time; exactly one descriptor. */
    private UnixSocket.Received receiveHandshake(UnixSocket c) {
        long deadline = System.nanoTime() + config.handshakeMillis() * 1_000_000L;
        byte[] buf = new byte[0];
        int[] fds = new int[0];
        boolean truncated = false;
        try {
            while (!Handshake.complete(buf, buf.length)) {
                int left = (int) Math.max(0, (deadline - System.nanoTime()) / 1_000_000);
                UnixSocket.Received r = left == 0 ? null : c.receive(Handshake.MAX_BYTES - buf.length + 1, left);
                if (r == null) throw new Handshake.HandshakeException("no complete handshake within " + config.handshakeMillis() + " ms");
                if (r.bytes().length == 0 && r.fds().length == 0) {
                    throw new Handshake.HandshakeException("the peer closed the socket " + (buf.length == 0 ? "without a handshake" : "in the middle of its handshake"));
                }
                int[] more = Arrays.copyOf(fds, fds.length + r.fds().length);
                System.arraycopy(r.fds(), 0, more, fds.length, r.fds().length);
                fds = more;
                truncated |= r.fdsTruncated();
                buf = Arrays.copyOf(buf, buf.length + r.bytes().length);
                System.arraycopy(r.bytes(), 0, buf, buf.length - r.bytes().length, r.bytes().length);
                if (buf.length > Handshake.MAX_BYTES) throw new Handshake.HandshakeException("the handshake is longer than " + Handshake.MAX_BYTES + " bytes");
            }
        } catch (RuntimeException e) {
            new UnixSocket.Received(buf, fds, truncated).closeFds();
            throw e;
        }
        return new UnixSocket.Received(buf, fds, truncated);
    }

    private Handshake checkHandshake(UnixSocket.Received got) {
        try {
            if (got.fdsTruncated()) throw new Handshake.HandshakeException("the handshake carried more descriptors than " + UnixSocket.MAX_FDS);
            if (got.fds().length != 1) {
                throw new Handshake.HandshakeException("the handshake carried " + got.fds().length + " descriptors, not 1 (the userfaultfd)"
                        + (got.fds().length == 3 ? "; three are Firecracker's guest_memfd (secret hiding) mode, not served here" : ""));
            }
            if (!isUserfaultfd(got.fds()[0])) throw new Handshake.HandshakeException("the descriptor sent with the handshake is not a userfaultfd");
            Handshake h = Handshake.parse(got.bytes());
            if (h.totalBytes() > config.fileBytes()) {
                GuestRegionMapping last = h.regions().getLast();
                throw new Handshake.HandshakeException("region " + last + " ends at file offset 0x" + Long.toHexString(h.totalBytes())
                        + ", past the end of " + config.file().describe());
            }
            return h;
        } catch (RuntimeException e) {
            got.closeFds();
            throw e;
        }
    }

    private static boolean isUserfaultfd(int fd) {
        try {
            return Files.readSymbolicLink(Path.of("/proc/self/fd/" + fd)).toString().equals("anon_inode:[userfaultfd]");
        } catch (IOException | UnsupportedOperationException e) {
            return false;
        }
    }

    private void refuse(String id, UnixSocket c, UnixSocket.PeerCredentials peer, String why) {
        refused.incrementAndGet();
        config.metrics().error("refused");
        String who = peer == null ? "" : " (pid " + peer.pid() + ", uid " + peer.uid() + ")";
        config.log().accept(id + " refused" + who + ": " + why);
        config.events().emit("refused", "vm", id, "peer_pid", peer == null ? null : peer.pid(), "peer_uid", peer == null ? null : peer.uid(),
                "reason", why);
        c.shutdown();
        c.close();
    }

    private VmConnection.Listener listener(String id) {
        return new VmConnection.Listener() {
            @Override
            public void failed(VmConnection c, String message) {
                failures.incrementAndGet();
                config.metrics().error("failed");
                config.log().accept(id + " failed: " + message);
                config.events().emit("failure", "vm", id, "peer_pid", c.peer.pid(), "reason", message, "on_failure", config.onFailure().name().toLowerCase());
                switch (config.onFailure()) {
                    case KILL -> {
                        if (c.peer.pid() > 0 && c.peer.pid() != ProcessHandle.current().pid()) Processes.kill(c.peer.pid(), Processes.SIGKILL);
                    }
                    case EXIT -> {
                        fatal.compareAndSet(null, id + ": " + message);
                        Thread.ofPlatform().daemon().start(PageServer.this::close);
                    }
                    case CLOSE -> { }
                }
            }

            @Override
            public void recorded(VmConnection c, WorkingSet set) {
                try {
                    set.write(config.recordTo());
                    config.log().accept(id + ": working set of " + set.size() + " pages written to " + config.recordTo());
                    config.events().emit("working_set_recorded", "vm", id, "file", config.recordTo().toString(), "pages", set.size());
                } catch (IOException e) {
                    config.log().accept(id + ": cannot write the working set to " + config.recordTo() + ": " + e.getMessage());
                    config.events().emit("failure", "vm", id, "reason", "working set not written: " + e.getMessage());
                }
            }

            @Override
            public void ended(VmConnection c) {
                config.metrics().retire(new VmView(c));
                live.remove(c);
                synchronized (PageServer.this) {
                    ended.add(c);
                    if (ended.size() > 1024) ended.removeFirst();
                }
                PagingStats st = new PagingStats(c.core);
                config.log().accept(String.format("%s ended (%s): %d faults, %d pages installed, %d removed", id, c.endReason(), st.faults(),
                        st.pagesInstalled(), c.removedPages()));
                config.events().emit("vm_end", "vm", id, "reason", c.endReason(), "faults", st.faults(), "pages_installed", st.pagesInstalled(),
                        "removed_pages", c.removedPages(), "seconds", (c.endedNanos - c.startedNanos) / 1e9);
                for (Consumer<VmConnection> w : endWatchers) w.accept(c);
            }
        };
    }

    /**
     * Stops accepting, removes the socket, stops every connection (their threads end at once) and ends
     * {@link #awaitEnd}. Any thread, any number of times.
     */
    @Override
    public void close() {
        if (closed) {
            end.countDown();
            return;
        }
        closed = true;
        try {
            Files.deleteIfExists(config.socket());
        } catch (IOException e) {
            config.log().accept("cannot remove " + config.socket() + ": " + e.getMessage());
        }
        try {
            acceptThread.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        listener.close();
        for (VmConnection c : live) {
            c.markStoppedByServer();
            c.stop();
        }
        long until = System.nanoTime() + 5_000_000_000L;
        while (!live.isEmpty() && System.nanoTime() < until) {
            try {
                Thread.sleep(5);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                break;
            }
        }
        config.events().emit("closed", "connections", connections.get(), "refused", refused.get(), "failures", failures.get());
        end.countDown();
    }
}
