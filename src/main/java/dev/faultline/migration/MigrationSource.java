package dev.faultline.migration;

import dev.faultline.guest.BootProtocol;
import dev.faultline.sys.Pagemap;
import dev.faultline.transport.Transport;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.ThreadPriority;
import dev.faultline.vmm.VcpuState;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.security.SecureRandom;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

/**
 * The sending side of a migration: connects to a destination before the guest starts (so the
 * destination builds its machine meanwhile), runs the guest, optionally pre-copies with dirty
 * logging, then pauses it, sends the low 1 MiB and the vCPU state, and from then on serves the
 * destination's page requests on the urgent connections while pushing every other page on the main
 * connection, starting near the latest requests and sweeping the rest.
 *
 * <p>The guest's RAM is frozen from the pause on (the source guest never runs again unless
 * {@link Options#reference} asks it to continue as the reference run, after every page is across),
 * so every request is idempotent: the same request always gets the same bytes.
 */
public final class MigrationSource {
    /** How long the source waits for READY at least: the destination builds its machine and warms up meanwhile. */
    static final int READY_TIMEOUT_MILLIS = 60_000;

    /** Pages pushed next to a request before the sweep goes on (2 MiB). */
    static final int BURST_PAGES = 512;

    /**
     * @param afterMillis   how long the guest runs on the source before the migration starts
     * @param precopyRounds dirty-logged pre-copy rounds before the switch-over (0: post-copy only)
     * @param timeoutMillis how long the destination may stay silent when an answer is due
     * @param reference     after the transfer, let the source's paused guest finish too (a run without a
     *                      migration in it) and compare its final RAM SHA-256 with the destination's
     * @param guestTimeout  how long the guest may run, on either side
     * @param priorities    raise the CPU priority of the urgent-request servers ({@link ThreadPriority#FAULT_PATH})
     *                      and of the push ({@link ThreadPriority#TRANSFER}); false leaves every thread at the default
     * @param pushRate      at most this many bytes of RAM per second in the background push (0: no limit); replies
     *                      to faults are never limited
     */
    public record Options(String host, int port, long afterMillis, int precopyRounds, int timeoutMillis, boolean reference,
                          Duration guestTimeout, boolean priorities, long pushRate) {
        public Options {
            if (pushRate < 0) throw new IllegalArgumentException("push rate must not be negative, got " + pushRate);
        }
    }

    /** What the migration is doing, for progress displays. Called from several threads. */
    public interface Listener {
        default void phase(String text) {}
        default void transfer(long pagesSent, long pagesTotal, long pagesRequested) {}
    }

    /**
     * @param figures     this side's figures (times, pages, bytes) merged with the destination's
     * @param sourceRun   the source machine's run: to the end with {@code reference}, else stopped after the switch-over
     * @param destination the destination's RESULT report
     * @param problems    empty when everything was verified
     */
    public record Result(Map<String, Object> figures, RunReport sourceRun, Map<String, Object> destination, List<String> problems) {
        public boolean ok() { return problems.isEmpty(); }
    }

    private final Options options;
    private final Transport transport;
    private final Listener listener;

    /** A source on plain TCP, nobody authenticated: for loopback tests ({@link Transport#insecure()}). */
    public MigrationSource(Options options, Listener listener) {
        this(options, Transport.insecure(), listener);
    }

    /**
     * @param transport how connections to the destination are made: each one (main and urgent) checks
     *                  the destination's identity ({@link Transport#connect}) before a frame is sent
     */
    public MigrationSource(Options options, Transport transport, Listener listener) {
        this.options = options;
        this.transport = transport;
        this.listener = listener;
    }

    /** Migrates {@code machine} (built, not started; its main slot dirty-logged when pre-copy rounds are asked for). */
    public Result migrate(Machine machine) {
        Run r = new Run(machine);
        try {
            return r.run();
        } finally {
            r.close();
        }
    }

    private final class Run implements AutoCloseable {
        private final Machine machine;
        private final MemorySegment ram;
        private final long ramSize, totalPages, firstMainPage;
        private final SentPages sent;
        private final long session = new SecureRandom().nextLong();
        private Connection main;
        private final List<Connection> urgent = new ArrayList<>();
        private final List<Thread> threads = new ArrayList<>();
        private Messages.HelloAck ack;
        private Machine.Execution exec;
        private final AtomicLong hint = new AtomicLong(-1), requests = new AtomicLong(), requestedPages = new AtomicLong();
        private final AtomicLong pushedPages = new AtomicLong(), pushedZero = new AtomicLong();
        private final AtomicReference<String> failure = new AtomicReference<>();
        private volatile boolean switchedOver, finished;
        private final Map<String, Object> fig = new LinkedHashMap<>();
        private long precopyPages, discardPages, switchoverPages;
        private volatile long pushWallNanos, pushCpuNanos;
        /** Thread name to the CPU priority it got (with {@link Options#priorities}). */
        private final Map<String, String> priorities = new java.util.concurrent.ConcurrentSkipListMap<>();
        private final org.HdrHistogram.Histogram serviceNanos = new org.HdrHistogram.Histogram(dev.faultline.paging.LaneStats.MAX_NANOS, 3);

        Run(Machine machine) {
            this.machine = machine;
            this.ram = machine.ram().segment();
            this.ramSize = ram.byteSize();
            this.totalPages = ramSize / Protocol.PAGE;
            this.firstMainPage = BootProtocol.IMAGE_MIN_GPA / Protocol.PAGE;
            this.sent = new SentPages(totalPages);
        }

        Result run() {
            long tConnect = System.nanoTime();
            connect();
            fig.put("handshake_ms", ms(System.nanoTime() - tConnect));
            fig.put("transport", main.link().protocol() + ", destination " + main.link().peerIdentity());
            fig.put("destination_backend", ack.backend());
            fig.put("mode", ack.demandPaging() ? (options.precopyRounds() > 0 ? "pre-copy then post-copy" : "post-copy") : "stop-and-copy");
            fig.put("mode_detail", ack.detail());
            exec = machine.start();
            listener.phase("guest running on the source");
            sleep(options.afterMillis());
            long t0 = System.nanoTime();
            // from the pre-copy rounds to the destination's RESUMED this thread moves memory against a
            // running guest and then holds the downtime: the push's priority, given back after
            if (options.priorities()) priorities.put("switch-over (pre-copy to RESUMED)",
                    ThreadPriority.TRANSFER.applyAndDescribe());
            try {
                return migrateFrom(t0);
            } finally {
                if (options.priorities()) ThreadPriority.resetCurrentThread();
            }
        }

        private Result migrateFrom(long t0) {
            MigrationEvents.Phase pre = phaseStart();
            precopy();
            phaseEnd(pre, "pre-copy", precopyPages);
            long tPause = System.nanoTime();
            MigrationEvents.Phase sw = phaseStart();
            List<VcpuState> states = exec.pause(Duration.ofSeconds(10));
            long paused = System.nanoTime();
            switchOver(states);
            long stateSent = System.nanoTime();
            phaseEnd(sw, "switch-over", switchoverPages);
            listener.phase(ack.demandPaging() ? "post-copy: the guest runs on the destination, memory follows" : "stop-and-copy done");
            MigrationEvents.Phase post = phaseStart();
            Frame f = receiveMain("RESUMED", options.timeoutMillis());
            long destStartNanos = Messages.u64(f, main.peer(), Protocol.RESUMED);
            long tResumed = System.nanoTime();
            // the push starts once the destination guest runs: until then its CPU time would only
            // lengthen the downtime (faults are served from the switch-over on)
            startServing();
            if (options.priorities()) ThreadPriority.resetCurrentThread();
            fig.put("downtime_ms", ms(tResumed - tPause));
            fig.put("downtime_parts_ms", Map.of("pause_vcpus", ms(paused - tPause), "send_state_and_low_memory", ms(stateSent - paused),
                    "destination_state_to_first_entry", ms(destStartNanos)));
            f = receiveMain("TRANSFERRED", (int) Math.min(Integer.MAX_VALUE, options.guestTimeout().toMillis()));
            Messages.Transferred tr = Messages.transferred(f, main.peer());
            long tDone = System.nanoTime();
            phaseEnd(post, "post-copy", pushedPages.get());
            finished = true;
            fig.put("total_ms", ms(tDone - t0));
            listener.transfer(totalPages, totalPages, requestedPages.get());
            List<String> problems = new ArrayList<>();
            if (failure.get() != null) problems.add(failure.get());
            // the transfer digest over the frozen RAM
            MigrationEvents.Phase verify = phaseStart();
            byte[] mine = Pages.digest(Pages.crcs(machine.ram().memory()));
            boolean transferOk = java.util.Arrays.equals(mine, tr.digest());
            fig.put("transfer_digest", HexFormat.of().formatHex(mine));
            fig.put("transfer_verified", transferOk);
            if (!transferOk) {
                problems.add("transfer digest differs: source " + HexFormat.of().formatHex(mine) + ", destination " + HexFormat.of().formatHex(tr.digest())
                        + " (a page the destination accepted is not the page the source had at the switch-over)");
            }
            RunReport sourceRun;
            if (options.reference()) {
                listener.phase("every page is across; the source finishes its own copy of the guest as the reference");
                exec.resume();
            } else {
                exec.stop("migrated to " + main.peer().substring(5));
            }
            sourceRun = exec.await();
            listener.phase("waiting for the destination's guest to finish");
            f = receiveMain("RESULT", (int) Math.min(Integer.MAX_VALUE, options.guestTimeout().toMillis()));
            Map<String, Object> dest = JsonText.read(Messages.string(f, main.peer(), Protocol.RESULT), main.peer() + ": RESULT");
            phaseEnd(verify, "verification", 0);
            if (!Boolean.TRUE.equals(dest.get("guest_clean"))) problems.add("the guest did not finish cleanly on the destination: " + dest.get("vcpu_results"));
            if (options.reference()) {
                fig.put("reference_ram_sha256", sourceRun.ramSha256());
                if (!sourceRun.clean()) problems.add("the reference run on the source did not finish cleanly: " + sourceRun.vcpus());
                if (!sourceRun.ramSha256().equals(dest.get("ram_sha256"))) {
                    problems.add("final RAM SHA-256 differs: destination " + dest.get("ram_sha256") + ", reference " + sourceRun.ramSha256());
                }
            }
            fig.put("ram_sha256", dest.get("ram_sha256"));
            fig.put("final_ram_verified", options.reference() && problems.isEmpty());
            fig.put("pages_total", totalPages);
            fig.put("pages_precopied", precopyPages);
            fig.put("pages_discarded_as_dirty", discardPages);
            fig.put("pages_at_switchover", switchoverPages);
            fig.put("pages_demanded", requestedPages.get());
            fig.put("requests", requests.get());
            fig.put("pages_pushed", pushedPages.get());
            fig.put("push_ms", Map.of("wall", ms(pushWallNanos), "cpu", ms(pushCpuNanos)));
            if (options.pushRate() > 0) fig.put("push_rate_limit_bytes_per_s", options.pushRate());
            fig.put("pages_pushed_as_zero", pushedZero.get());
            long wire = main.bytesSent() + main.bytesReceived();
            for (Connection c : urgent) wire += c.bytesSent() + c.bytesReceived();
            fig.put("bytes_on_wire", wire);
            fig.put("request_service_us", dev.faultline.paging.PagingStats.percentiles(serviceNanos));
            fig.put("thread_priorities", options.priorities() ? new LinkedHashMap<>(priorities) : "default (not raised)");
            String verdict = problems.isEmpty() ? "verified" : String.join("; ", problems);
            try {
                main.send(Protocol.VERDICT, Messages.string(verdict));
            } catch (ProtocolException e) {
                problems.add("the verdict could not be sent: " + e.getMessage());
            }
            return new Result(fig, sourceRun, dest, problems);
        }

        private void connect() {
            MigrationEvents.warmUp();
            try {
                main = open();
                main.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(session, Protocol.ROLE_MAIN, 0, Protocol.PAGE, ramSize,
                        machine.vcpus().size(), BootProtocol.IMAGE_MIN_GPA, options.precopyRounds(), machine.vm().hypervisor().name())));
                Frame f = main.receive("HELLO_ACK");
                if (f.type() == Protocol.ERROR) throw new ProtocolException(main.peer() + " refused the migration: " + Messages.string(f, main.peer(), Protocol.ERROR));
                ack = Messages.helloAck(f, main.peer());
                if (ack.session() != session) throw new ProtocolException(main.peer() + ": HELLO_ACK names session " + Long.toHexString(ack.session()) + ", not ours");
                for (int i = 0; i < ack.urgentConnections(); i++) {
                    Connection c = open();
                    int lane = i;
                    c.send(Protocol.HELLO, b -> Messages.hello(b, new Messages.Hello(session, Protocol.ROLE_URGENT, lane, Protocol.PAGE, 0, 0, 0, 0, "")));
                    c.setTimeout(0); // an urgent connection is quiet while the guest does not fault
                    urgent.add(c);
                }
                startUrgentServers();
                // the destination builds its machine and warms its fault path up with requests on every urgent
                // connection, then says READY: the main connection is quiet meanwhile, for longer than a message
                // is due (cold TLS code and a loaded host: over 10 s seen), so this one wait has a longer bound
                main.setTimeout(Math.max(options.timeoutMillis(), READY_TIMEOUT_MILLIS));
                Frame ready = main.receive("the destination's READY");
                main.setTimeout(options.timeoutMillis());
                if (ready.type() == Protocol.ERROR) throw new ProtocolException(main.peer() + " gave up: " + Messages.string(ready, main.peer(), Protocol.ERROR));
                Messages.u64(ready, main.peer(), Protocol.READY);
            } catch (IOException e) {
                throw new ProtocolException("cannot reach the destination " + options.host() + ":" + options.port() + ": " + e.getMessage(), e);
            }
        }

        private Connection open() throws IOException {
            return Connection.connect(transport, options.host(), options.port(), options.timeoutMillis());
        }

        private void precopy() {
            int rounds = options.precopyRounds();
            if (rounds <= 0) return;
            long mainPages = totalPages - firstMainPage;
            MemorySegment bitmap = Arena.ofAuto().allocate(((mainPages + 63) / 64) * 8, 8);
            try (Pagemap pagemap = Pagemap.open()) {
                precopyRounds(rounds, mainPages, bitmap, pagemap);
            }
        }

        private void precopyRounds(int rounds, long mainPages, MemorySegment bitmap, Pagemap pagemap) {
            for (int round = 1; round <= rounds; round++) {
                machine.vm().getDirtyLog(BootProtocol.SLOT_MAIN, bitmap);
                long before = precopyPages;
                if (round == 1) {
                    for (long p = firstMainPage; p < totalPages; p += Protocol.MAX_PAGES_PER_MESSAGE) {
                        int n = (int) Math.min(Protocol.MAX_PAGES_PER_MESSAGE, totalPages - p);
                        sendNonZero(pagemap, p, n);
                    }
                } else {
                    for (long i = nextDirty(bitmap, 0, mainPages); i >= 0; i = nextDirty(bitmap, i + 1, mainPages)) {
                        long page = firstMainPage + i;
                        if (!sent.isSent(page) && Pages.isZero(ram, page * Protocol.PAGE)) continue;
                        sendPages(page, 1, Protocol.PURPOSE_PRECOPY, 0);
                        sent.trySet(page);
                        precopyPages++;
                    }
                }
                listener.phase("pre-copy round " + round + " of " + rounds + ": " + (precopyPages - before) + " pages");
            }
        }

        /** Round one: every non-zero page, in runs. */
        private void sendNonZero(Pagemap pagemap, long first, int n) {
            // never-populated pages are zeros without a read (a write after this shows in the next dirty log)
            long known = pagemap.neverPopulated(machine.ram().memory(), first * Protocol.PAGE, n);
            int i = 0;
            while (i < n) {
                while (i < n && ((known & (1L << i)) != 0 || Pages.isZero(ram, (first + i) * Protocol.PAGE))) i++;
                int j = i;
                while (j < n && (known & (1L << j)) == 0 && !Pages.isZero(ram, (first + j) * Protocol.PAGE)) j++;
                if (j > i) {
                    sendPages(first + i, j - i, Protocol.PURPOSE_PRECOPY, 0);
                    for (int k = i; k < j; k++) sent.trySet(first + k);
                    precopyPages += j - i;
                }
                i = j;
            }
        }

        private int sendPages(long page, int n, int purpose, long requestId) {
            return sendPages(page, n, purpose, requestId, 0);
        }

        /** @param knownZero pages (bit i: page + i) known to be zeros without reading them */
        private int sendPages(long page, int n, int purpose, long requestId, long knownZero) {
            int[] data = new int[1];
            main.send(Protocol.PAGES, b -> data[0] = Pages.encode(b, ram, page * Protocol.PAGE, n, purpose, requestId, knownZero));
            return data[0];
        }

        private void switchOver(List<VcpuState> states) {
            List<Messages.Range> discards = new ArrayList<>();
            if (options.precopyRounds() > 0) {
                long mainPages = totalPages - firstMainPage;
                MemorySegment bitmap = Arena.ofAuto().allocate(((mainPages + 63) / 64) * 8, 8);
                machine.vm().getDirtyLog(BootProtocol.SLOT_MAIN, bitmap);
                for (long i = nextDirty(bitmap, 0, mainPages); i >= 0; i = nextDirty(bitmap, i + 1, mainPages)) {
                    long page = firstMainPage + i;
                    if (!sent.isSent(page)) continue;
                    sent.clear(page);
                    discardPages++;
                    Messages.Range last = discards.isEmpty() ? null : discards.get(discards.size() - 1);
                    if (last != null && last.gpa() + (long) last.pages() * Protocol.PAGE == page * Protocol.PAGE) {
                        discards.set(discards.size() - 1, new Messages.Range(last.gpa(), last.pages() + 1));
                    } else {
                        discards.add(new Messages.Range(page * Protocol.PAGE, 1));
                    }
                }
            }
            // the low 1 MiB (boot tables, stacks) is never demand-paged: it goes now
            for (long p = 0; p < firstMainPage; p += Protocol.MAX_PAGES_PER_MESSAGE) {
                sendPages(p, (int) Math.min(Protocol.MAX_PAGES_PER_MESSAGE, firstMainPage - p), Protocol.PURPOSE_SWITCHOVER, 0);
                for (long k = p; k < Math.min(firstMainPage, p + Protocol.MAX_PAGES_PER_MESSAGE); k++) sent.trySet(k);
            }
            switchoverPages += firstMainPage;
            if (!ack.demandPaging()) {
                // stop-and-copy: everything the destination lacks, before it resumes
                long p = firstMainPage;
                while ((p = sent.nextUnsent(p, totalPages)) >= 0) {
                    int n = 0;
                    while (n < Protocol.MAX_PAGES_PER_MESSAGE && p + n < totalPages && sent.trySet(p + n)) n++;
                    sendPages(p, n, Protocol.PURPOSE_SWITCHOVER, 0);
                    switchoverPages += n;
                    p += n;
                }
            } else {
                for (int i = 0; i < discards.size(); i += 1000) {
                    int from = i, n = Math.min(1000, discards.size() - i);
                    main.send(Protocol.DISCARD, b -> Messages.discard(b, discards, from, n));
                }
            }
            main.send(Protocol.STATE, b -> Messages.state(b, states));
            switchedOver = true;
        }

        private void startUrgentServers() {
            for (int i = 0; i < urgent.size(); i++) {
                Connection c = urgent.get(i);
                threads.add(Thread.ofPlatform().daemon().name("migration-urgent-" + i).start(() -> serveRequests(c)));
            }
        }

        private void startServing() {
            threads.add(Thread.ofPlatform().daemon().name("migration-push").start(this::push));
        }

        private void serveRequests(Connection c) {
            if (options.priorities()) priorities.put(Thread.currentThread().getName(), ThreadPriority.FAULT_PATH.applyAndDescribe());
            // Each request is read in place and answered through this one body: nothing is made per fault.
            ReplyBody reply = new ReplyBody(c.sendSegment());
            try {
                while (true) {
                    int len = c.receiveInPlace("a page request", 0);
                    long t0 = System.nanoTime();
                    if (c.lastType() == Protocol.ERROR) {
                        failure.compareAndSet(null, c.peer() + " gave up: " + Messages.string(c.lastFrame(), c.peer(), Protocol.ERROR));
                        return;
                    }
                    Messages.checkRequestInPlace(c, len, ramSize);
                    MemorySegment in = c.receivedSegment();
                    long id = Messages.requestId(in), gpa = Messages.requestGpa(in);
                    int count = Messages.requestCount(in);
                    reply.gpa = gpa;
                    reply.count = count;
                    reply.requestId = id;
                    if (id == 0) { // warm-up: answered like a fault, from RAM as it is now; the destination discards it
                        c.send(Protocol.PAGES, reply);
                        continue;
                    }
                    if (!switchedOver) throw new ProtocolException(c.peer() + ": request " + id + " before the switch-over");
                    long page = gpa / Protocol.PAGE;
                    c.send(Protocol.PAGES, reply);
                    for (int k = 0; k < count; k++) sent.trySet(page + k);
                    hint.set(page + count);
                    requests.incrementAndGet();
                    requestedPages.addAndGet(count);
                    long nanos = System.nanoTime() - t0;
                    synchronized (serviceNanos) {
                        serviceNanos.recordValue(Math.min(nanos, dev.faultline.paging.LaneStats.MAX_NANOS));
                    }
                    MigrationEvents.Served ev = new MigrationEvents.Served();
                    if (ev.shouldCommit()) {
                        ev.gpa = gpa;
                        ev.pages = count;
                        ev.requestId = id;
                        ev.nanos = nanos;
                        ev.commit();
                    }
                }
            } catch (ProtocolException e) {
                if (!finished) failure.compareAndSet(null, e.getMessage());
            }
        }

        /** A PAGES reply (purpose REPLY) from RAM, written through the connection's send segment; reused by its thread. */
        private final class ReplyBody implements java.util.function.Consumer<java.nio.ByteBuffer> {
            private final MemorySegment out;
            long gpa, requestId;
            int count;

            ReplyBody(MemorySegment out) { this.out = out; }

            @Override
            public void accept(java.nio.ByteBuffer b) {
                Pages.encode(b, out, ram, gpa, count, Protocol.PURPOSE_REPLY, requestId, 0);
            }
        }

        private void push() {
            if (options.priorities()) priorities.put(Thread.currentThread().getName(), ThreadPriority.TRANSFER.applyAndDescribe());
            java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
            long wall0 = System.nanoTime(), cpu0 = mx.getCurrentThreadCpuTime();
            // pages the source never populated are zeros: the page table says so without a read
            try (Pagemap pagemap = Pagemap.open()) {
                long cursor = firstMainPage, burst = -1;
                int burstLeft = 0;
                long lastReport = 0;
                while (ack.demandPaging()) {
                    long h = hint.getAndSet(-1);
                    if (h >= firstMainPage && h < totalPages) {
                        burst = h;
                        burstLeft = BURST_PAGES;
                    }
                    long start;
                    boolean bursting = burstLeft > 0;
                    if (bursting) {
                        start = sent.nextUnsent(burst, Math.min(totalPages, burst + burstLeft));
                        if (start < 0) {
                            burstLeft = 0;
                            continue;
                        }
                        burstLeft -= (int) (start - burst);
                    } else {
                        start = sent.nextUnsent(cursor, totalPages);
                        if (start < 0) break;
                    }
                    int n = 0;
                    while (n < Protocol.MAX_PAGES_PER_MESSAGE && start + n < totalPages && sent.trySet(start + n)) n++;
                    if (n == 0) continue;
                    long knownZero = pagemap.neverPopulated(machine.ram().memory(), start * Protocol.PAGE, n);
                    int data = sendPages(start, n, Protocol.PURPOSE_PUSH, 0, knownZero);
                    long pushed = pushedPages.addAndGet(n);
                    if (options.pushRate() > 0) pace(wall0, pushed);
                    pushedZero.addAndGet(n - data);
                    if (bursting) {
                        burst = start + n;
                        burstLeft = Math.max(0, burstLeft - n);
                    } else {
                        cursor = start + n;
                    }
                    long now = System.nanoTime();
                    if (now - lastReport > 50_000_000L) {
                        lastReport = now;
                        listener.transfer(sent.countSent(), totalPages, requestedPages.get());
                    }
                }
                long total = pushedPages.get();
                pushWallNanos = System.nanoTime() - wall0;
                pushCpuNanos = mx.getCurrentThreadCpuTime() - cpu0;
                main.send(Protocol.PUSH_DONE, b -> b.putLong(total));
            } catch (ProtocolException e) {
                failure.compareAndSet(null, e.getMessage());
            }
        }

        /** Sleeps until {@code pushed} pages are due at {@link Options#pushRate} since {@code start}. */
        private void pace(long start, long pushed) {
            long due = start + (long) (pushed * (double) Protocol.PAGE * 1e9 / options.pushRate());
            long ahead = due - System.nanoTime();
            if (ahead > 0) java.util.concurrent.locks.LockSupport.parkNanos(ahead);
        }

        private Frame receiveMain(String what, int timeoutMillis) {
            try {
                main.setTimeout(timeoutMillis);
            } catch (IOException e) {
                throw new ProtocolException(main.peer() + ": cannot set a timeout: " + e.getMessage(), e);
            }
            Frame f;
            try {
                f = main.receive(what);
            } catch (ProtocolException e) {
                String extra = failure.get() == null ? "" : " (" + failure.get() + ")";
                throw new ProtocolException(e.getMessage() + extra + "; the source guest stays paused", e);
            }
            if (f.type() == Protocol.ERROR) {
                throw new ProtocolException(main.peer() + " gave up: " + Messages.string(f, main.peer(), Protocol.ERROR) + "; the source guest stays paused");
            }
            if (f.type() != Protocol.typeOf(what)) {
                throw new ProtocolException(main.peer() + ": expected " + what + ", got message " + f.describe());
            }
            return f;
        }

        private MigrationEvents.Phase phaseStart() {
            MigrationEvents.Phase ev = new MigrationEvents.Phase();
            ev.begin();
            return ev;
        }

        private void phaseEnd(MigrationEvents.Phase ev, String phase, long pages) {
            ev.end();
            if (ev.shouldCommit()) {
                ev.side = "source";
                ev.phase = phase;
                ev.pages = pages;
                ev.bytes = main.bytesSent();
                ev.commit();
            }
        }

        private void sleep(long millis) {
            try {
                Thread.sleep(millis);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new ProtocolException("interrupted while the guest ran on the source");
            }
        }

        @Override
        public void close() {
            finished = true;
            if (exec != null) {
                exec.stop("migration ended");
                exec.await();
            }
            if (main != null) main.close();
            for (Connection c : urgent) c.close();
            for (Thread t : threads) {
                try {
                    t.join(2000);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }
    }

    /**
     * The first page at or after {@code from} (and before {@code limit}) that a KVM dirty bitmap
     * (u64 words, bit i of word w: page 64w + i) names, or -1; clean words are skipped whole, so a
     * scan of a mostly clean 1 GiB slot costs 4096 reads, not 262,144 (it runs inside the downtime).
     */
    static long nextDirty(MemorySegment bitmap, long from, long limit) {
        if (from >= limit) return -1;
        long w = from >>> 6;
        long word = bitmap.get(ValueLayout.JAVA_LONG, w * 8) & (-1L << (from & 63));
        long words = (limit + 63) >>> 6;
        while (word == 0) {
            if (++w >= words) return -1;
            word = bitmap.get(ValueLayout.JAVA_LONG, w * 8);
        }
        long i = (w << 6) + Long.numberOfTrailingZeros(word);
        return i < limit ? i : -1;
    }

    static double ms(long nanos) {
        return Math.round(nanos / 1e3) / 1e3;
    }
}
