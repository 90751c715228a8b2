package dev.faultline.migration;

import dev.faultline.guest.BootProtocol;
import dev.faultline.hv.Hypervisor;
import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageStates;
import dev.faultline.paging.PagingStats;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.transport.PeerRefusedException;
import dev.faultline.transport.Transport;
import dev.faultline.vmm.Backends;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.ThreadPriority;
import dev.faultline.vmm.VcpuResult;
import dev.faultline.vmm.VcpuState;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The receiving side of a migration: accepts one source, builds the machine while the source still
 * runs the guest, takes pre-copied pages, and on STATE starts the guest at once with its memory
 * demand-paged from the source while the pushed pages are installed in the background, each page
 * exactly once ({@link FaultCore#offer}). kvm: userfaultfd, one handler thread and one urgent
 * connection per vCPU part of RAM ({@link UffdPager}); or, with {@link Options#exitDelivery}, exit
 * delivery ({@link UffdPager.Delivery#VCPU_EXIT}): each vCPU serves its own memory-fault exit over its
 * own urgent connection, as on ref. ref: exit on missing, each vCPU serves its own memory-fault exit
 * over its own urgent connection and re-enters ({@link ExitPager}).
 *
 * <p>Where the backend cannot demand-page (kvm on a kernel without userfaultfd) it says so in
 * HELLO_ACK and the source copies every page before the switch-over (stop-and-copy): correct, with a
 * downtime that grows with RAM.
 *
 * <p>Bad input: any frame that fails its checks stops the migration with a message naming the peer
 * and the frame; nothing of that frame is installed, and a guest already running is paused and then
 * stopped, never run on memory that did not arrive.
 */
public final class MigrationDestination {
    /**
     * @param backend        kvm, ref or auto
     * @param timeoutMillis  how long the peer may stay silent while this side waits for a message
     * @param guestTimeout   how long the migrated guest may run
     * @param priorities raise the CPU priority of the userfaultfd handlers ({@link ThreadPriority#FAULT_PATH};
     *                   where vCPUs serve their own faults, each vCPU thread while it serves one) and of the
     *                   thread that installs pushed pages ({@link ThreadPriority#TRANSFER}); false leaves every
     *                   thread at the default
     * @param exitDelivery kvm: each vCPU fetches its own missing pages after a memory-fault exit (exit
     *                   delivery) instead of sleeping while a userfaultfd handler does; ref always does
     */
    public record Options(String backend, int timeoutMillis, Duration guestTimeout, boolean priorities, boolean exitDelivery) {
        public Options(String backend, int timeoutMillis, Duration guestTimeout, boolean priorities) {
            this(backend, timeoutMillis, guestTimeout, priorities, false);
        }
    }

    /** Warm-up requests per urgent connection before READY (runs the fault path's code hot on both sides). */
    static final int WARM_UP_REQUESTS = 2000;

    /**
     * How long a thread serving a fault polls for the source's reply before it sleeps. A reply takes
     * 50-100 µs here; being woken for it costs a cross-CPU wake-up on both sides (the source's send
     * pays for waking this thread). Polling cut the median remote fault from 89-153 to 60-72 µs and
     * the source's median service time from 21-39 to 11-14 µs (docs/migration.md).
     */
    static final long REPLY_SPIN_NANOS = 200_000;

    private final Options options;
    private final Transport transport;
    private final Consumer<String> progress;

    /** A destination on plain TCP, nobody authenticated: for loopback tests ({@link Transport#insecure()}). */
    public MigrationDestination(Options options, Consumer<String> progress) {
        this(options, Transport.insecure(), progress);
    }

    /**
     * @param transport how connections are accepted: every connection (main and urgent) is
     *                  authenticated by it ({@link Transport#accept}) before a frame of it is read
     */
    public MigrationDestination(Options options, Transport transport, Consumer<String> progress) {
        this.options = options;
        this.transport = transport;
        this.progress = progress;
    }

    /** Binds a listening socket (port 0: any free port). */
    public static ServerSocket listen(String bindAddress, int port) throws IOException {
        // from a channel: accepted sockets then have channels too, which Connection needs
        ServerSocket s = java.nio.channels.ServerSocketChannel.open().socket();
        s.setReuseAddress(true);
        s.bind(new java.net.InetSocketAddress(bindAddress, port), 8);
        return s;
    }

    /** Whether this machine's {@code backend} can demand-page a migrated guest, and why not. */
    public static String demandPagingUnavailable(String backend) {
        if (backend.equals("ref")) return null;   // exit on missing: always there
        try {
            Userfaultfd.open().close();
            return null;
        } catch (ErrnoException | UnsupportedOperationException e) {
            return "userfaultfd is not available (" + e.getMessage() + "): every page is copied before the guest resumes (stop-and-copy)";
        }
    }

    private volatile java.util.function.Consumer<FaultCore> pagingWatcher = c -> { };

    /** Called with each migration's demand-paging core once it exists (metrics read its lanes while the guest runs). */
    public void onPaging(java.util.function.Consumer<FaultCore> watcher) {
        pagingWatcher = watcher;
    }

    /** Serves one migration on {@code server}; returns this side's report (also sent to the source as RESULT). */
    public Map<String, Object> serve(ServerSocket server) throws IOException {
        server.setSoTimeout(options.timeoutMillis());
        Session s;
        try {
            Socket sock = server.accept();
            s = new Session(authenticated(sock), server);
        } catch (SocketTimeoutException e) {
            throw new ProtocolException("no migration source connected within " + options.timeoutMillis() + " ms");
        }
        try {
            return s.run();
        } finally {
            s.close();
        }
    }

    /** The connection of an accepted socket once the transport has authenticated its peer. */
    private Connection authenticated(Socket sock) {
        try {
            return new Connection(transport.accept(sock.getChannel(), options.timeoutMillis()), options.timeoutMillis());
        } catch (PeerRefusedException e) {
            throw new ProtocolException(e.getMessage(), e);
        }
    }

    private final class Session implements AutoCloseable {
        private final Connection main;
        private final ServerSocket server;
        private final List<Connection> urgent = new ArrayList<>();
        private Messages.Hello hello;
        private Hypervisor hv;
        private Machine machine;
        private Machine.Execution exec;
        private FaultCore core;
        private DemandPager pager;
        private List<FaultCore.Lane> pushLanes = List.of();
        private RemotePageSource remote;
        private boolean demandPaging;
        private String backend, fallbackWhy;
        private int[] pageCrcs;
        private BitSet written;
        private LatencySamples samples;
        private volatile long stateReceivedNanos, firstEntryNanos;
        /** The errno with which a vCPU thread was refused the fault path's priority (0: never refused). */
        private volatile int vcpuBoostRefused;
        private Map<String, Object> switchParts = Map.of();
        private long pushedMessages, pushedPages, pushedInstalled, precopyPages, switchoverPages, discardedPages;

        Session(Connection main, ServerSocket server) {
            this.main = main;
            this.server = server;
        }

        Map<String, Object> run() throws IOException {
            try {
                handshake();
                Map<String, Object> report;
                try {
                    receiveUntilPushDone();
                    if (exec != null) installerCpuNanos = java.lang.management.ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime() - installerCpu0;
                    report = finish();
                } finally {
                    // (finish() drops it once TRANSFERRED is sent; this covers the failures)
                    if (installerPriority != null) ThreadPriority.resetCurrentThread();
                }
                return report;
            } catch (ProtocolException | dev.faultline.paging.PageSourceException e) {
                String why = failGuest(e.getMessage());
                main.sendErrorQuietly(e.getMessage());
                throw new ProtocolException(e.getMessage() + why, e);
            }
        }

        /** Pauses a running guest, then stops it: it never runs on memory that did not arrive. */
        private String failGuest(String reason) {
            if (exec == null) return machine == null ? "" : "; the guest was never started";
            try {
                exec.pause(Duration.ofSeconds(2));
            } catch (RuntimeException pauseFailed) {
                // a vCPU that cannot reach an instruction boundary is kicked and stopped below
            }
            exec.stop("migration failed: " + reason);
            exec.await();
            return "; the guest was paused and stopped";
        }

        private void handshake() throws IOException {
            MigrationEvents.warmUp();
            MigrationEvents.Phase ev = new MigrationEvents.Phase();
            ev.begin();
            hello = Messages.hello(main.receive("HELLO"), main.peer());
            String p = main.peer();
            if (hello.role() != Protocol.ROLE_MAIN) throw new ProtocolException(p + ": the first connection must be the main one, got role " + hello.role());
            if (hello.pageSize() != Protocol.PAGE) throw new ProtocolException(p + ": page size " + hello.pageSize() + ", this side supports " + Protocol.PAGE);
            if (hello.ramSize() < BootProtocol.IMAGE_MIN_GPA + Protocol.PAGE || hello.ramSize() > BootProtocol.MAX_RAM
                    || hello.ramSize() % Protocol.PAGE != 0) {
                throw new ProtocolException(p + ": RAM of " + hello.ramSize() + " bytes is not a RAM size this side can build");
            }
            if (hello.vcpus() < 1 || hello.vcpus() > 16) throw new ProtocolException(p + ": " + hello.vcpus() + " vCPUs, 1 to 16 are supported");
            if (hello.pagedBase() != BootProtocol.IMAGE_MIN_GPA) {
                throw new ProtocolException(String.format("%s: RAM layout with the main slot at 0x%x, this side has it at 0x%x",
                        p, hello.pagedBase(), BootProtocol.IMAGE_MIN_GPA));
            }
            backend = options.backend().equals("auto") ? Backends.best().name() : options.backend();
            fallbackWhy = demandPagingUnavailable(backend);
            demandPaging = fallbackWhy == null;
            hv = Backends.open(backend);
            long ram = hello.ramSize();
            int vcpus = hello.vcpus();
            pageCrcs = new int[(int) (ram / Protocol.PAGE)];
            written = new BitSet(pageCrcs.length);
            MachineSpec spec = MachineSpec.awaitingState(ram, vcpus).withTimeout(options.guestTimeout()).withExitLogLimit(0);
            if (demandPaging && vcpusServeFaults()) {
                // The pager needs the urgent connections, which come after the machine is built: the
                // machine's handler forwards each memory-fault exit to it (no allocation per fault).
                // With priorities the vCPU thread serves it at the fault path's priority, as a handler
                // thread would: the push installer runs at nice -10, and a vCPU thread woken by its
                // reply behind it waited 10-47 ms at the 99th percentile (docs/migration.md).
                boolean boost = options.priorities();
                spec = spec.withMainSlot(0, new MemoryFaultHandler() {
                    @Override
                    public String resolve(int vcpu, dev.faultline.hv.VcpuExit.MemoryFault fault) {
                        DemandPager p = pager;
                        if (p == null) return "a memory fault before the switch-over";
                        int refused = boost ? ThreadPriority.beginFaultPath() : -1;
                        try {
                            return p.faultHandler().resolve(vcpu, fault);
                        } finally {
                            if (refused == 0) ThreadPriority.endFaultPath();
                            else if (refused > 0) vcpuBoostRefused = refused;
                        }
                    }

                    @Override
                    public String lastResolution(int vcpu) { return pager.faultHandler().lastResolution(vcpu); }
                });
            }
            int lanes = vcpus;
            if (demandPaging) {
                samples = new LatencySamples(System.nanoTime(), 100_000);
                // urgent connections are filled in below, before any fault can happen
                remote = null;
            }
            MemoryPreparer firstEntry = ctx -> {
                MemoryPreparer.Session inner = pager != null ? pager.prepare(ctx) : () -> { };
                return new MemoryPreparer.Session() {
                    @Override
                    public void vcpuThreadStarted(int index) {
                        inner.vcpuThreadStarted(index);
                        resumed();
                    }

                    @Override
                    public void vcpuThreadStopping(int index) { inner.vcpuThreadStopping(index); }

                    @Override
                    public void close() { inner.close(); }
                };
            };
            spec = spec.withMemoryPreparer(firstEntry);
            machine = new Machine(hv, spec);
            main.send(Protocol.HELLO_ACK, b -> Messages.helloAck(b, new Messages.HelloAck(hello.session(), demandPaging,
                    demandPaging ? lanes : 0, backend, demandPaging ? "post-copy: faults demand-paged (" + delivery() + ") over " + lanes
                    + " urgent connections" : fallbackWhy)));
            if (demandPaging) {
                for (int i = 0; i < lanes; i++) {
                    Socket sock;
                    try {
                        sock = server.accept();
                    } catch (SocketTimeoutException e) {
                        throw new ProtocolException(main.peer() + " opened " + i + " of the " + lanes + " urgent connections within " + options.timeoutMillis() + " ms");
                    }
                    Connection c = MigrationDestination.this.authenticated(sock);
                    urgent.add(c);
                    Messages.Hello h = Messages.hello(c.receive("HELLO on urgent connection " + i), c.peer());
                    if (h.role() != Protocol.ROLE_URGENT || h.session() != hello.session()) {
                        throw new ProtocolException(c.peer() + ": urgent connection " + i + " says role " + h.role() + ", session "
                                + Long.toHexString(h.session()) + "; expected an urgent connection of session " + Long.toHexString(hello.session()));
                    }
                }
                remote = new RemotePageSource(urgent, ram, this::accepted, samples, REPLY_SPIN_NANOS);
                remote.warmUp(WARM_UP_REQUESTS);
                core = new FaultCore(remote, BootProtocol.IMAGE_MIN_GPA, ram - BootProtocol.IMAGE_MIN_GPA, vcpus, Prefetch.NONE, false);
                pager = pagerFor(core, lanes);
                pagingWatcher.accept(core);
            }
            warmUpSwitchOver();
            main.send(Protocol.READY, b -> b.putLong(demandPaging ? (long) WARM_UP_REQUESTS * lanes : 0));
            progress.accept("destination: " + backend + " machine of " + (ram >> 20) + " MiB and " + vcpus + " vCPU(s) ready for "
                    + main.peer() + (demandPaging ? " (post-copy)" : " (" + fallbackWhy + ")"));
            ev.end();
            commit(ev, "handshake", 0, main.bytesReceived());
        }

        /** Runs the switch-over's native calls once ahead of time (their first call links and compiles). */
        private void warmUpSwitchOver() {
            for (dev.faultline.hv.Vcpu c : machine.vcpus()) {
                c.setSregs(c.getSregs());
                c.setRegs(c.getRegs());
            }
            if (!demandPaging) return;
            // a throwaway guest demand-paged from zeros: loads and links everything Machine.start() and a
            // fault touch first, so that the real start after STATE is quick
            long mem = 8L << 20;
            dev.faultline.guest.workload.Workload w = dev.faultline.guest.workload.Workloads.build("seq-write",
                    dev.faultline.guest.workload.WorkloadParams.of(mem, 1));
            FaultCore zc = new FaultCore(dev.faultline.paging.ZeroSource.INSTANCE, BootProtocol.IMAGE_MIN_GPA, mem - BootProtocol.IMAGE_MIN_GPA, 1,
                    Prefetch.NONE, false);
            DemandPager zp = pagerFor(zc, 1);
            try (Machine m = new Machine(hv, MachineSpec.of(mem, 1, w.image()).withExitLogLimit(0).withMainSlot(0, zp.faultHandler())
                    .withMemoryPreparer(zp).withTimeout(Duration.ofSeconds(30)))) {
                Machine.Execution e = m.start();
                zp.addLanes("warm-up", Protocol.MAX_PAGES_PER_MESSAGE);
                e.await();
            }
            if (!(zp instanceof UffdPager)) return;
            try (dev.faultline.sys.HostMemory scratch = dev.faultline.sys.HostMemory.anonymous(2 * Protocol.PAGE);
                 Userfaultfd u = Userfaultfd.open()) {
                u.api(Userfaultfd.FEATURE_THREAD_ID | Userfaultfd.FEATURE_EVENT_REMOVE);
                u.register(scratch.address(), 2 * Protocol.PAGE, Userfaultfd.REGISTER_MODE_MISSING);
                u.unregister(scratch.address(), 2 * Protocol.PAGE);
            }
        }

        private void resumed() {
            synchronized (this) {
                if (firstEntryNanos != 0) return;
                firstEntryNanos = System.nanoTime();
            }
            long took = firstEntryNanos - stateReceivedNanos;
            try {
                main.send(Protocol.RESUMED, b -> b.putLong(took));
            } catch (ProtocolException e) {
                exec.stop("cannot tell the source the guest resumed: " + e.getMessage());
            }
        }

        void accepted(long gpa, ByteBuffer payload, int off, boolean zero) {
            pageCrcs[(int) (gpa / Protocol.PAGE)] = zero ? Pages.zeroPageCrc() : Pages.crc(payload, off);
        }

        private String installerPriority;
        private long installerCpu0, installerCpuNanos, pushDoneNanos;

        private void receiveUntilPushDone() throws IOException {
            MemorySegment ram = machine.ram().segment();
            // before the switch-over the source runs its guest (and pre-copies): silence is normal
            main.setTimeout((int) Math.min(Integer.MAX_VALUE, options.guestTimeout().toMillis()));
            MigrationEvents.Phase pre = new MigrationEvents.Phase();
            pre.begin();
            while (true) {
                Frame f = main.receive(exec == null ? "pages or the switch-over" : "pushed pages");
                String p = main.peer();
                switch (f.type()) {
                    case Protocol.PAGES -> {
                        Messages.PagesHeader h = Messages.pagesHeader(f, p, hello.ramSize());
                        ByteBuffer pl = f.payload();
                        if (exec == null) {
                            if (h.purpose() != Protocol.PURPOSE_PRECOPY && h.purpose() != Protocol.PURPOSE_SWITCHOVER) {
                                throw new ProtocolException(p + ": message " + f.describe() + " carries " + Protocol.purposeName(h.purpose())
                                        + " pages before the switch-over; nothing of it was installed");
                            }
                            writeDirect(ram, h, pl);
                            if (h.purpose() == Protocol.PURPOSE_PRECOPY) precopyPages += h.count(); else switchoverPages += h.count();
                        } else {
                            if (h.purpose() != Protocol.PURPOSE_PUSH) {
                                throw new ProtocolException(p + ": message " + f.describe() + " carries " + Protocol.purposeName(h.purpose())
                                        + " pages after the switch-over; nothing of it was installed");
                            }
                            if (h.gpa() < BootProtocol.IMAGE_MIN_GPA) {
                                throw new ProtocolException(String.format("%s: message %s pushes [0x%x, +%d pages) below the demand-paged range at 0x%x; nothing of it was installed",
                                        p, f.describe(), h.gpa(), h.count(), BootProtocol.IMAGE_MIN_GPA));
                            }
                            install(h, pl);
                        }
                    }
                    case Protocol.DISCARD -> {
                        if (exec != null) throw new ProtocolException(p + ": message " + f.describe() + " discards pages after the switch-over");
                        for (Messages.Range r : Messages.discard(f, p, hello.ramSize())) {
                            long from = r.gpa() / Protocol.PAGE;
                            written.clear((int) from, (int) from + r.pages());
                            machine.ram().memory().discard(r.gpa(), (long) r.pages() * Protocol.PAGE);
                            discardedPages += r.pages();
                        }
                    }
                    case Protocol.STATE -> {
                        if (exec != null) throw new ProtocolException(p + ": a second " + f.describe());
                        List<VcpuState> states = Messages.state(f, p, hello.vcpus());
                        stateReceivedNanos = System.nanoTime();
                        main.setTimeout(options.timeoutMillis());
                        pre.end();
                        commit(pre, "pre-copy", precopyPages, main.bytesReceived());
                        switchOver(states);
                    }
                    case Protocol.PUSH_DONE -> {
                        if (exec == null) throw new ProtocolException(p + ": " + f.describe() + " before the switch-over");
                        Messages.u64(f, p, Protocol.PUSH_DONE);
                        pushDoneNanos = System.nanoTime();
                        return;
                    }
                    case Protocol.ERROR -> throw new ProtocolException(p + " gave up: " + Messages.string(f, p, Protocol.ERROR));
                    default -> throw new ProtocolException(p + ": unexpected message " + f.describe() + " on the main connection");
                }
            }
        }

        /** Before the start: pages go straight into RAM (nothing is registered yet). */
        private void writeDirect(MemorySegment ram, Messages.PagesHeader h, ByteBuffer payload) {
            MemorySegment data = MemorySegment.ofBuffer(payload);
            int off = Messages.PagesHeader.BYTES;
            for (int i = 0; i < h.count(); i++) {
                long gpa = h.gpa() + (long) i * Protocol.PAGE;
                int page = (int) (gpa / Protocol.PAGE);
                if (h.isZero(i)) {
                    if (written.get(page) || gpa < BootProtocol.IMAGE_MIN_GPA) ram.asSlice(gpa, Protocol.PAGE).fill((byte) 0);
                    if (gpa < BootProtocol.IMAGE_MIN_GPA || !demandPaging) written.set(page);
                    accepted(gpa, null, 0, true);
                } else {
                    MemorySegment.copy(data, off, ram, gpa, Protocol.PAGE);
                    accepted(gpa, payload, off, false);
                    written.set(page);
                    off += Protocol.PAGE;
                }
            }
        }

        private void switchOver(List<VcpuState> states) {
            MigrationEvents.Phase ev = new MigrationEvents.Phase();
            ev.begin();
            long t0 = System.nanoTime();
            machine.loadState(states);
            long t1 = System.nanoTime();
            if (demandPaging) {
                PageStates st = core.states();
                for (int from = written.nextSetBit((int) (BootProtocol.IMAGE_MIN_GPA / Protocol.PAGE)); from >= 0; ) {
                    int to = written.nextClearBit(from);
                    st.markPresentBeforeStart(core.pageOf((long) from * Protocol.PAGE), to - from);
                    from = written.nextSetBit(to);
                }
            }
            long t2 = System.nanoTime();
            exec = machine.start();
            long t3 = System.nanoTime();
            // from here this thread installs pushed pages: after faults, before guest code (it needs
            // little CPU, but needs it when the data is there)
            if (options.priorities()) installerPriority = ThreadPriority.TRANSFER.applyAndDescribe();
            installerCpu0 = java.lang.management.ManagementFactory.getThreadMXBean().getCurrentThreadCpuTime();
            switchParts = Map.of("load_state_ms", ms(t1 - t0), "mark_precopied_present_ms", ms(t2 - t1), "start_machine_ms", ms(t3 - t2));
            if (demandPaging) pushLanes = pager.addLanes("push", Protocol.MAX_PAGES_PER_MESSAGE);
            ev.end();
            commit(ev, "switch-over", 0, 0);
            progress.accept("destination: guest resumed " + String.format("%.1f", (System.nanoTime() - stateReceivedNanos) / 1e6)
                    + " ms after its state arrived" + (demandPaging ? "; its memory follows on demand" : ""));
        }

        /** After the start: pushed pages go through the fault core, skipping pages a fault got first. */
        private void install(Messages.PagesHeader h, ByteBuffer payload) {
            MigrationEvents.PushInstall ev = new MigrationEvents.PushInstall();
            ev.begin();
            MemorySegment src = MemorySegment.ofBuffer(payload);
            int off = Messages.PagesHeader.BYTES;
            int i = 0, installed = 0;
            while (i < h.count()) {
                // a run of zero or of data pages, not crossing a lane boundary
                long gpa = h.gpa() + (long) i * Protocol.PAGE;
                FaultCore.Lane lane = laneOf(gpa);
                boolean zero = h.isZero(i);
                int n = 1;
                while (i + n < h.count() && h.isZero(i + n) == zero && h.gpa() + (long) (i + n) * Protocol.PAGE < lane.endGpa()) n++;
                for (int k = 0; k < n; k++) {
                    accepted(gpa + (long) k * Protocol.PAGE, payload, off + k * Protocol.PAGE, zero);
                }
                installed += core.offer(lane, gpa, n, zero ? null : src, off);
                if (!zero) off += n * Protocol.PAGE;
                i += n;
            }
            pushedMessages++;
            pushedPages += h.count();
            pushedInstalled += installed;
            ev.end();
            if (ev.shouldCommit()) {
                ev.gpa = h.gpa();
                ev.pages = h.count();
                ev.installed = installed;
                ev.commit();
            }
        }

        private FaultCore.Lane laneOf(long gpa) {
            return DemandPager.laneOf(pushLanes, gpa);
        }

        /** Whether the vCPU threads serve their own faults (ref; kvm with exit delivery), each over its own urgent connection. */
        private boolean vcpusServeFaults() {
            return backend.equals("ref") || options.exitDelivery();
        }

        /**
         * The demand pager of this backend over {@code c}: userfaultfd with {@code lanes} handler
         * threads (kvm), or one lane per vCPU whose thread takes an urgent connection on its first
         * fault: exit on missing (ref) or exit delivery (kvm, one handler thread for host threads).
         */
        private DemandPager pagerFor(FaultCore c, int lanes) {
            if (backend.equals("ref")) return new ExitPager(c);
            UffdPager.Config handlers = new UffdPager.Config(UffdPager.Mode.MISSING, lanes, 0, false, List.of(), UffdPager.Pinning.NONE,
                    options.priorities() ? ThreadPriority.FAULT_PATH : ThreadPriority.NORMAL, UffdPager.Waiting.AUTO);
            if (!options.exitDelivery()) return new UffdPager(c, handlers);
            return new UffdPager(c, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
        }

        private String delivery() {
            return backend.equals("ref") ? "exit on missing" : options.exitDelivery() ? "exit delivery, a user-mode-only userfaultfd" : "userfaultfd";
        }

        private Map<String, Object> finish() {
            MigrationEvents.Phase post = new MigrationEvents.Phase();
            post.begin();
            long deadline = System.nanoTime() + options.timeoutMillis() * 1_000_000L;
            if (demandPaging) {
                long total = core.states().pages();
                while (core.states().countPresent() < total) {
                    if (pager.failureMessage() != null) throw new ProtocolException("serving a fault failed: " + pager.failureMessage());
                    if (System.nanoTime() > deadline) {
                        throw new ProtocolException(main.peer() + ": " + (total - core.states().countPresent())
                                + " pages are still missing " + options.timeoutMillis() + " ms after PUSH_DONE");
                    }
                    try {
                        Thread.sleep(1);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                        throw new ProtocolException("interrupted while waiting for the last pages");
                    }
                }
            }
            // RESUMED (sent by the first vCPU thread) goes before TRANSFERRED, as the source expects
            while (firstEntryNanos == 0) {
                if (System.nanoTime() > deadline) throw new ProtocolException("no vCPU of the destination guest started within " + options.timeoutMillis() + " ms");
                Thread.onSpinWait();
            }
            long transferredNanos = System.nanoTime();
            byte[] digest = Pages.digest(pageCrcs);
            long demanded = demandPaging ? new PagingStats(core).faults() : 0;
            main.send(Protocol.TRANSFERRED, b -> Messages.transferred(b, new Messages.Transferred(demanded, pushedInstalled, digest)));
            // the transfer is over: from here this thread only waits for the guest, at the default priority
            if (installerPriority != null) ThreadPriority.resetCurrentThread();
            post.end();
            commit(post, "post-copy", pushedPages, main.bytesReceived());
            progress.accept("destination: every page is here; the guest runs on");
            RunReport report = exec.await();
            Map<String, Object> m = report(report, transferredNanos, digest);
            main.send(Protocol.RESULT, Messages.string(JsonText.write(m)));
            try {
                main.setTimeout(options.timeoutMillis());
                Frame v = main.receive("the source's verdict");
                if (v.type() == Protocol.VERDICT) m.put("verdict", Messages.string(v, main.peer(), Protocol.VERDICT));
            } catch (ProtocolException | IOException e) {
                m.put("verdict", "none: " + e.getMessage());
            }
            return m;
        }

        private Object priorities() {
            if (!options.priorities()) return "default (not raised)";
            Map<String, Object> m = new LinkedHashMap<>();
            if (pager instanceof UffdPager u && !vcpusServeFaults()) {
                String refused = u.schedulingRefused();
                m.put("uffd handlers", refused == null ? u.config().scheduling().toString() : "normal (" + refused + ")");
            } else if (demandPaging) {
                int refused = vcpuBoostRefused;
                m.put("vcpu threads", (refused == 0 ? ThreadPriority.FAULT_PATH.toString() : "normal (" + ThreadPriority.FAULT_PATH + " refused: "
                        + dev.faultline.sys.Errno.name(refused) + ")") + " while serving a fault of their own (" + delivery() + ")");
            }
            if (installerPriority != null) m.put("push installer", installerPriority);
            return m;
        }

        private Map<String, Object> report(RunReport r, long transferredNanos, byte[] digest) {
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("backend", backend);
            m.put("transport", main.link().protocol() + ", source " + main.link().peerIdentity());
            m.put("transport_setup", transport.describe());
            m.put("delivery", demandPaging ? "post-copy (" + delivery() + ")" : "stop-and-copy: " + fallbackWhy);
            m.put("ram_bytes", hello.ramSize());
            m.put("vcpus", hello.vcpus());
            m.put("state_to_first_entry_ms", ms(firstEntryNanos - stateReceivedNanos));
            m.put("switch_over_parts", switchParts);
            m.put("state_to_push_done_ms", ms(pushDoneNanos - stateReceivedNanos));
            m.put("state_to_all_pages_ms", ms(transferredNanos - stateReceivedNanos));
            m.put("transfer_digest", java.util.HexFormat.of().formatHex(digest));
            m.put("pages_precopied", precopyPages);
            m.put("pages_at_switchover", switchoverPages);
            m.put("pages_discarded_as_dirty", discardedPages);
            m.put("push_messages", pushedMessages);
            m.put("thread_priorities", priorities());
            m.put("push_installer_cpu_ms", ms(installerCpuNanos));
            m.put("pages_pushed", pushedPages);
            m.put("pages_pushed_installed", pushedInstalled);
            m.put("bytes_received", main.bytesReceived() + urgent.stream().mapToLong(Connection::bytesReceived).sum());
            m.put("bytes_sent", main.bytesSent() + urgent.stream().mapToLong(Connection::bytesSent).sum());
            if (demandPaging) {
                PagingStats ps = new PagingStats(core);
                m.put("remote_faults", ps.faults());
                m.put("pages_demanded", remote.requests());
                List<Object> lat = new ArrayList<>();
                org.HdrHistogram.Histogram all = new org.HdrHistogram.Histogram(dev.faultline.paging.LaneStats.MAX_NANOS, 3);
                for (int v = 0; v <= hello.vcpus(); v++) {
                    org.HdrHistogram.Histogram h = ps.latency(v);
                    all.add(h);
                    if (v == hello.vcpus() && h.getTotalCount() == 0) continue;
                    Map<String, Object> x = new LinkedHashMap<>();
                    x.put("vcpu", v == hello.vcpus() ? "unknown" : v);
                    x.putAll(PagingStats.percentiles(h));
                    lat.add(x);
                }
                m.put("fault_latency", lat);
                m.put("fault_latency_all", PagingStats.percentiles(all));
                m.put("fault_histogram", histogram(all));
                m.put("fault_samples", samples.toMap(stateReceivedNanos));
                m.put("paging", ps.toMap());
            }
            m.put("guest_clean", r.clean());
            m.put("ram_sha256", r.ramSha256());
            List<Object> vs = new ArrayList<>();
            for (VcpuResult v : r.vcpus()) {
                Map<String, Object> x = new LinkedHashMap<>();
                x.put("index", v.index());
                x.put("outcome", v.outcome().name().toLowerCase());
                x.put("detail", v.detail());
                x.put("reports", java.util.Arrays.stream(v.reports()).boxed().toList());
                vs.add(x);
            }
            m.put("vcpu_results", vs);
            m.put("run_ms", ms(r.runNanos()));
            return m;
        }

        @Override
        public void close() {
            if (exec != null) {
                exec.stop("migration session closed");
                exec.await();
            }
            if (machine != null) machine.close();
            if (hv != null) hv.close();
            main.close();
            for (Connection c : urgent) c.close();
        }
    }

    /** Buckets of a latency histogram in µs, log-spaced, for the chart. */
    static Map<String, Object> histogram(org.HdrHistogram.Histogram h) {
        List<Double> upper = new ArrayList<>();
        List<Long> counts = new ArrayList<>();
        if (h.getTotalCount() > 0) {
            for (org.HdrHistogram.HistogramIterationValue v : h.logarithmicBucketValues(1000, 1.5)) {
                upper.add(Math.round(v.getValueIteratedTo() / 10.0) / 100.0);
                counts.add(v.getCountAddedInThisIterationStep());
            }
        }
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("upper_us", upper);
        m.put("count", counts);
        return m;
    }

    static double ms(long nanos) {
        return Math.round(nanos / 1e3) / 1e3;
    }

    private static void commit(MigrationEvents.Phase ev, String phase, long pages, long bytes) {
        if (ev.shouldCommit()) {
            ev.side = "destination";
            ev.phase = phase;
            ev.pages = pages;
            ev.bytes = bytes;
            ev.commit();
        }
    }
}
