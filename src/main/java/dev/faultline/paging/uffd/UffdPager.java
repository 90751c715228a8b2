package dev.faultline.paging.uffd;

import dev.faultline.guest.BootProtocol;
import dev.faultline.hv.VcpuExit;
import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.Installer;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.ThreadTimes;
import dev.faultline.paging.exit.ExitFaultHandler;
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.sys.HostMemory;
import dev.faultline.sys.Libc;
import dev.faultline.sys.UffdDoorbells;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.ThreadPriority;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.concurrent.atomic.AtomicReference;

/**
 * Demand paging of the main memslot [1 MiB, RAM) on the kvm backend through userfaultfd: registers
 * the range before the vCPUs start, serves faults with handler threads through a {@link FaultCore},
 * and unregisters after every vCPU has stopped. The low 1 MiB (boot tables the VMM wrote) is never
 * registered.
 *
 * <p>The range is split into {@code handlers} parts, each with its own userfaultfd and its own
 * handler thread (so one thread's sleep in poll() is woken only by its own part's faults, and no
 * two handlers read the same queue). {@link Config#splitGpas} lets the caller align the parts with
 * the vCPUs' working areas, which makes "one handler thread per vCPU" literal.
 *
 * <p>With {@link Delivery#VCPU_EXIT} the vCPUs do not sleep in the kernel: the range is registered
 * with one userfaultfd that takes user-mode faults only, so KVM's own access to a missing page fails,
 * KVM_RUN comes back with a memory-fault exit, and the vCPU's thread serves the page itself through
 * the same core (UFFDIO_COPY or UFFDIO_CONTINUE on that userfaultfd, one lane per vCPU) and
 * re-enters: the seeds' exit-to-userspace design on the real KVM. The one handler thread then serves
 * only faults of host threads (and REMOVE events), and sleeps otherwise.
 */
public final class UffdPager implements DemandPager {
    public enum Mode { MISSING, MINOR }

    /**
     * Where threads run. {@link #PAIRED} pins handler i and vCPU i to the same CPU (i modulo the CPU
     * count): the two then hand a fault back and forth with same-CPU context switches instead of
     * cross-CPU wake-ups, which on these machines cost an IPI to a halted CPU (docs/paging.md).
     */
    public enum Pinning { NONE, PAIRED }

    /**
     * Where an idle handler sleeps. {@link #READ}: in read() on a blocking userfaultfd, so a fault
     * costs the handler two system calls (read, install) instead of three (poll, read, install);
     * only for a handler with no background work and no spinning. {@link #POLL}: in poll() on a
     * non-blocking one, between background prefetch steps and spinning. {@link #AUTO}: READ when
     * the prefetch has no background work and the handler does not spin, else POLL.
     */
    public enum Waiting { AUTO, READ, POLL }

    /**
     * Who serves a vCPU's fault. {@link #HANDLER}: the vCPU's thread sleeps in the kernel, on the
     * userfaultfd's wait queue, while a handler thread serves the page and wakes it (two cross-thread
     * wake-ups per fault). {@link #VCPU_EXIT}: the vCPU's own thread, after a memory-fault exit
     * ({@link #faultHandler()}); this needs a KVM that reports the failed access with its gpa (here:
     * an MMIO exit inside a memslot, decoded as a memory fault; upstream KVM on hardware returns a
     * bare EFAULT, and the vCPU then stops saying so).
     */
    public enum Delivery { HANDLER, VCPU_EXIT }

    /**
     * @param spinNanos how long a handler spins on non-blocking reads after its last event before it
     *     sleeps in poll() (0: always sleep)
     * @param zeropage  map zero runs with UFFDIO_ZEROPAGE instead of copying zeros (MISSING only)
     * @param splitGpas where parts start after the first (page-aligned, increasing, inside the paged
     *     range), or empty for {@code handlers} equal parts
     * @param pinning   where handler and vCPU threads run
     * @param scheduling how handler threads are scheduled ({@link ThreadPriority#FAULT_PATH}: SCHED_FIFO, so a
     *     handler woken behind busy vCPUs runs at once; never with spinning); if the kernel refuses it (EPERM)
     *     the handlers run normally and {@link #schedulingRefused()} says why
     * @param waiting   where an idle handler sleeps
     * @param delivery  who serves a vCPU's fault; {@link Delivery#VCPU_EXIT} takes one handler thread (for host
     *     threads' faults), which does not spin
     */
    public record Config(Mode mode, int handlers, long spinNanos, boolean zeropage, List<Long> splitGpas, Pinning pinning,
                         ThreadPriority scheduling, Waiting waiting, Delivery delivery) {
        public Config {
            if (handlers < 1) throw new IllegalArgumentException("at least one handler thread is needed, got " + handlers);
            splitGpas = splitGpas == null ? List.of() : List.copyOf(splitGpas);
            if (pinning == null) pinning = Pinning.NONE;
            if (scheduling == null) scheduling = ThreadPriority.NORMAL;
            if (waiting == null) waiting = Waiting.AUTO;
            if (waiting == Waiting.READ && spinNanos > 0) {
                throw new IllegalArgumentException("a handler that sleeps in read() cannot spin: spin 0 or wait in poll()");
            }
            if (scheduling.policy() == ThreadPriority.Policy.FIFO && spinNanos > 0) {
                throw new IllegalArgumentException("a SCHED_FIFO handler must not spin (it would starve the vCPU on its CPU): spin 0 or normal scheduling");
            }
            if (!splitGpas.isEmpty() && splitGpas.size() != handlers - 1) {
                throw new IllegalArgumentException(handlers + " handlers need " + (handlers - 1) + " split points, got " + splitGpas.size());
            }
            if (delivery == null) delivery = Delivery.HANDLER;
            if (delivery == Delivery.VCPU_EXIT && handlers != 1) {
                throw new IllegalArgumentException("exit delivery registers the paged range with one userfaultfd, whose one handler thread "
                        + "serves only host threads' faults (each vCPU serves its own): 1 handler, not " + handlers);
            }
            if (delivery == Delivery.VCPU_EXIT && spinNanos > 0) {
                throw new IllegalArgumentException("under exit delivery the handler serves only host threads' faults and must not spin");
            }
        }

        public Config(Mode mode, int handlers, long spinNanos, boolean zeropage, List<Long> splitGpas, Pinning pinning,
                      ThreadPriority scheduling, Waiting waiting) {
            this(mode, handlers, spinNanos, zeropage, splitGpas, pinning, scheduling, waiting, Delivery.HANDLER);
        }

        public Config(Mode mode, int handlers, long spinNanos, boolean zeropage, List<Long> splitGpas, Pinning pinning) {
            this(mode, handlers, spinNanos, zeropage, splitGpas, pinning, ThreadPriority.NORMAL, Waiting.AUTO);
        }

        /**
         * Exit delivery in {@code mode}: each vCPU serves its own faults, and one handler thread (no
         * spinning, no pinning, normal scheduling) serves host threads' faults.
         */
        public static Config exitDelivery(Mode mode) {
            return new Config(mode, 1, 0, false, List.of(), Pinning.NONE).withDelivery(Delivery.VCPU_EXIT);
        }

        /** This configuration with {@code d} as its delivery. */
        public Config withDelivery(Delivery d) {
            return new Config(mode, handlers, spinNanos, zeropage, splitGpas, pinning, scheduling, waiting, d);
        }

        /** Whether handlers serving with {@code prefetch} sleep in read() (else in poll()). */
        public boolean sleepsInRead(Prefetch prefetch) {
            boolean background = prefetch instanceof Prefetch.Replay || prefetch instanceof Prefetch.Readahead r && r.aheadPages() > 0;
            if (waiting == Waiting.READ && background) {
                throw new IllegalArgumentException("a handler that sleeps in read() has no turn for background prefetch ("
                        + Prefetch.describe(prefetch) + "): wait in poll()");
            }
            return waiting == Waiting.READ || waiting == Waiting.AUTO && spinNanos == 0 && !background;
        }
    }

    /**
     * Why the handlers of the last run could not get {@link Config#scheduling} (e.g. "SCHED_FIFO 10:
     * errno 1 (EPERM)"), or null when they got it.
     */
    public String schedulingRefused() { return schedulingRefused; }

    private volatile String schedulingRefused;

    private final FaultCore core;
    private final Config config;
    private final MemoryFaultHandler faultHandler;
    private final AtomicReference<String> exitFailure = new AtomicReference<>();
    private volatile Running running;

    public UffdPager(FaultCore core, Config config) {
        this.core = core;
        this.config = config;
        this.faultHandler = config.delivery() == Delivery.VCPU_EXIT ? new VcpuExitDelivery() : MemoryFaultHandler.NONE;
    }

    @Override public FaultCore core() { return core; }
    public Config config() { return config; }

    /**
     * {@link Delivery#HANDLER}: {@link MemoryFaultHandler#NONE}, since vCPUs wait for their pages in the
     * kernel and never exit for them. {@link Delivery#VCPU_EXIT}: serves the exit on the vCPU's thread.
     */
    @Override public MemoryFaultHandler faultHandler() { return faultHandler; }

    /** The first failure of the last run: a handler thread's, or (exit delivery) a vCPU's own serving; null if none. */
    @Override
    public String failureMessage() {
        RuntimeException e = failure();
        return e != null ? e.getMessage() : exitFailure.get();
    }

    /** The first failure of a handler thread in the last run (a source error, an unexpected errno), or null; see {@link #failureMessage()}. */
    public RuntimeException failure() {
        if (running == null) return null;
        for (UffdHandler h : running.handlers) if (h.failure() != null) return h.failure();
        return null;
    }

    /**
     * vCPU {@code index}'s thread in the last run, from its first entry to its last exit: CPU time (its
     * share of every fault: the guest, KVM, the userfaultfd wait's switches), run-queue wait and switches.
     * Read after the run; NONE when unknown.
     */
    public ThreadTimes vcpuThreadTimes(int index) {
        if (running == null) return ThreadTimes.NONE;
        ThreadTimes t = running.vcpuTimes[index];
        return t == null ? ThreadTimes.NONE : t;
    }

    /**
     * Lanes for a thread that installs pages nobody faulted on yet ({@link FaultCore#offer}: pages a
     * migration source pushes), one per handler part (runs never cross parts), each with its own
     * caller and a staging buffer of {@code maxRunPages}; zero runs are mapped with UFFDIO_ZEROPAGE.
     * Only while a run is prepared (after {@code Machine.start()}); the lanes are used by one thread.
     */
    @Override
    public synchronized List<FaultCore.Lane> addLanes(String name, int maxRunPages) {
        if (running == null || running.closed) throw new IllegalStateException("lanes can be added only while the machine runs");
        if (config.mode() != Mode.MISSING) throw new IllegalStateException("lanes for offered pages need MISSING mode (UFFDIO_COPY)");
        List<Long> b = boundaries();
        List<FaultCore.Lane> lanes = new ArrayList<>();
        for (int i = 0; i + 1 < b.size(); i++) {
            Installer inst = new CopyInstaller(running.uffds.get(i), new Userfaultfd.Caller(), maxRunPages, core.zeros(),
                    running.context.ram().memory().address(), true);
            lanes.add(core.newLane(name + "-" + i, b.get(i), b.get(i + 1), inst));
        }
        return lanes;
    }

    @Override
    public Session prepare(Context context) {
        GuestRam ram = context.ram();
        HostMemory mem = ram.memory();
        if (core.baseGpa() < BootProtocol.IMAGE_MIN_GPA || core.endGpa() > ram.size()) {
            throw new IllegalArgumentException(String.format("paged range [0x%x, 0x%x) must lie in the main memslot [0x%x, 0x%x)",
                    core.baseGpa(), core.endGpa(), BootProtocol.IMAGE_MIN_GPA, ram.size()));
        }
        if (config.mode() == Mode.MINOR && mem.kind() != HostMemory.Kind.MEMFD) {
            throw new IllegalArgumentException("userfaultfd MINOR mode needs memfd-backed guest RAM (page cache to continue from), not "
                    + mem.kind().name().toLowerCase() + " memory");
        }
        Running r = new Running(context);
        exitFailure.set(null);
        running = r;
        try {
            r.start(mem);
        } catch (RuntimeException e) {
            r.close();
            throw e;
        }
        return r;
    }

    private List<Long> boundaries() {
        List<Long> b = new ArrayList<>();
        b.add(core.baseGpa());
        if (!config.splitGpas().isEmpty()) {
            b.addAll(config.splitGpas());
        } else {
            long pages = (core.endGpa() - core.baseGpa()) / FaultCore.PAGE;
            for (int i = 1; i < config.handlers(); i++) b.add(core.baseGpa() + pages * i / config.handlers() * FaultCore.PAGE);
        }
        b.add(core.endGpa());
        for (int i = 1; i < b.size(); i++) {
            if (b.get(i) <= b.get(i - 1) || (b.get(i) & (FaultCore.PAGE - 1)) != 0) {
                throw new IllegalArgumentException("handler parts must be page-aligned, increasing and non-empty: " + b);
            }
        }
        return b;
    }

    /**
     * Exit delivery's memory-fault handler: the vCPU serves its own fault through the running
     * session's {@link ExitFaultHandler} (the same core as the handler threads, so a page is
     * installed once whoever faults on it). A source failure is this vCPU's stop reason and the
     * pager's {@link #failureMessage()}; nothing of the page is made up.
     */
    private final class VcpuExitDelivery implements MemoryFaultHandler {
        @Override
        public String resolve(int vcpuIndex, VcpuExit.MemoryFault fault) {
            Running r = running;
            if (r == null || r.exitHandler == null || r.closed) return "demand paging is not prepared for this machine";
            String why = r.exitHandler.resolve(vcpuIndex, fault);
            if (why != null) exitFailure.compareAndSet(null, why);
            return why;
        }

        @Override
        public String lastResolution(int vcpuIndex) { return ExitPager.INSTALLED; }
    }

    private final class Running implements Session {
        private final Context context;
        private final AtomicIntegerArray vcpuTids;
        private final ThreadTimes[] vcpuStart, vcpuTimes;
        private final List<Userfaultfd> uffds = new ArrayList<>();
        private final List<long[]> registered = new ArrayList<>();
        private final List<UffdHandler> handlers = new ArrayList<>();
        private final List<Thread> threads = new ArrayList<>();
        private HostMemory alias;
        private ExitFaultHandler exitHandler;   // exit delivery only; set before prepare() returns
        private UffdDoorbells doorbells;
        private boolean[] doorbellReleased;
        private volatile boolean closed;

        Running(Context context) {
            this.context = context;
            this.vcpuTids = new AtomicIntegerArray(context.vcpus());
            this.vcpuStart = new ThreadTimes[context.vcpus()];
            this.vcpuTimes = new ThreadTimes[context.vcpus()];
            java.util.Arrays.fill(vcpuTimes, ThreadTimes.NONE);
        }

        void start(HostMemory mem) {
            boolean minor = config.mode() == Mode.MINOR;
            boolean exits = config.delivery() == Delivery.VCPU_EXIT;
            boolean sleepInRead = config.sleepsInRead(core.prefetch());
            if (minor) alias = mem.alias();
            long features = Userfaultfd.FEATURE_THREAD_ID | Userfaultfd.FEATURE_EVENT_REMOVE
                    | (minor ? Userfaultfd.FEATURE_MISSING_SHMEM | Userfaultfd.FEATURE_MINOR_SHMEM : 0);
            long modes = minor ? Userfaultfd.REGISTER_MODE_MISSING | Userfaultfd.REGISTER_MODE_MINOR : Userfaultfd.REGISTER_MODE_MISSING;
            List<Long> b = boundaries();
            long hvaBase = mem.address();
            doorbells = new UffdDoorbells(b.size() - 1, exits);
            doorbellReleased = new boolean[b.size() - 1];
            for (int i = 0; i + 1 < b.size(); i++) {
                Userfaultfd u = Userfaultfd.open(sleepInRead, exits);
                uffds.add(u);
                u.api(features);
                long from = b.get(i), to = b.get(i + 1);
                u.register(hvaBase + from, to - from, modes);
                registered.add(new long[] {hvaBase + from, to - from});
                u.register(doorbell(i), FaultCore.PAGE, Userfaultfd.REGISTER_MODE_MISSING);
                Userfaultfd.Caller caller = new Userfaultfd.Caller();
                FaultCore.Lane lane = core.newLane("uffd-" + i, from, to, installer(u, caller, hvaBase));
                int part = i;
                handlers.add(new UffdHandler(u, caller, core, lane, hvaBase, doorbell(i), () -> releaseDoorbell(part), sleepInRead,
                        config.spinNanos(), vcpuTids, this::stopAfterFailure));
            }
            if (exits) {   // one part (Config): every vCPU installs through its userfaultfd, with a caller and staging of its own
                Userfaultfd u = uffds.get(0);
                exitHandler = new ExitFaultHandler(core, context.vcpus(), v -> installer(u, new Userfaultfd.Caller(), hvaBase));
            }
            schedulingRefused = null;
            // Each handler sets itself up (pinning, scheduling, its starting times) before prepare() returns,
            // so nothing that may allocate runs on a handler once vCPUs or other threads can fault.
            java.util.concurrent.CountDownLatch ready = new java.util.concurrent.CountDownLatch(handlers.size());
            for (int i = 0; i < handlers.size(); i++) {
                UffdHandler h = handlers.get(i);
                int index = i;
                boolean paired = config.pinning() == Pinning.PAIRED;
                Runnable body = () -> {
                    try {
                        if (paired) Libc.pinCurrentThreadToCpuOf(index);
                        int errno = config.scheduling().applyToCurrentThread();
                        if (errno != 0) schedulingRefused = config.scheduling() + ": " + dev.faultline.sys.Errno.describe(errno);
                        h.beforeServing();
                    } finally {
                        ready.countDown();
                    }
                    h.run();
                };
                threads.add(Thread.ofPlatform().daemon().name("uffd-handler-" + i).start(body));
            }
            try {
                ready.await();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }

        private long doorbell(int part) { return doorbells.address(part); }

        /** How a lane on {@code u} installs: UFFDIO_CONTINUE through the alias (MINOR), else UFFDIO_COPY from its staging. */
        private Installer installer(Userfaultfd u, Userfaultfd.Caller caller, long hvaBase) {
            return config.mode() == Mode.MINOR ? new ContinueInstaller(u, caller, alias, hvaBase)
                    : new CopyInstaller(u, caller, core.prefetch().maxRunPages(), core.zeros(), hvaBase, config.zeropage());
        }

        /** Unregisters part {@code part}'s doorbell once, which releases a thread that rang it (the handler has stopped). */
        private synchronized void releaseDoorbell(int part) {
            if (doorbellReleased[part]) return;
            doorbellReleased[part] = true;
            uffds.get(part).unregister(doorbell(part), FaultCore.PAGE);
        }

        /**
         * A handler failed: stop every vCPU, then release any vCPU blocked in a userfaultfd wait for a
         * page that will never come (a kick does not end that wait on this PVM host). The paged range
         * is first made inaccessible, then unregistered: the released fault is retried, fails (KVM_RUN
         * returns EFAULT) and the vCPU stops without running another guest instruction on a page the
         * source never provided. Access is given back in {@link #close} once every vCPU has stopped.
         */
        private void stopAfterFailure(String reason) {
            context.stopMachine().accept(reason);
            synchronized (this) {
                if (!revoked) {
                    revoked = true;
                    for (long[] r : registered) context.ram().memory().protect(r[0] - context.ram().memory().address(), r[1], Libc.PROT_NONE);
                }
            }
            unregisterAll();
        }

        private synchronized void unregisterAll() {
            if (unregistered) return;
            unregistered = true;
            for (int i = 0; i < registered.size(); i++) uffds.get(i).unregister(registered.get(i)[0], registered.get(i)[1]);
        }

        private boolean revoked;
        private boolean unregistered;

        @Override
        public void vcpuThreadStarted(int index) {
            vcpuTids.set(index, Libc.gettid());
            if (config.pinning() == Pinning.PAIRED) Libc.pinCurrentThreadToCpuOf(index);
            vcpuStart[index] = ThreadTimes.ofCurrentThread();
        }

        @Override
        public void vcpuThreadStopping(int index) {
            ThreadTimes start = vcpuStart[index];
            if (start != null) vcpuTimes[index] = ThreadTimes.ofCurrentThread().minus(start);
        }

        @Override
        public void close() {
            if (closed) return;
            closed = true;
            for (UffdHandler h : handlers) h.requestStop();
            // wake each handler through its doorbell; it stops and unregisters the doorbell, which lets ring() return
            for (int i = 0; i < threads.size(); i++) if (threads.get(i).isAlive()) doorbells.ring(i);
            for (Thread t : threads) {
                try {
                    t.join();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            unregisterAll();
            synchronized (this) {
                if (revoked) {
                    for (long[] r : registered) {
                        context.ram().memory().protect(r[0] - context.ram().memory().address(), r[1], Libc.PROT_READ | Libc.PROT_WRITE);
                    }
                }
            }
            for (Userfaultfd u : uffds) u.close();
            if (doorbells != null) doorbells.close();
            if (alias != null) alias.close();
        }
    }
}
