package dev.faultline.paging.uffd;

import dev.faultline.paging.FaultCore;
import dev.faultline.paging.LaneStats;
import dev.faultline.paging.ThreadTimes;
import dev.faultline.sys.UffdEvents;
import dev.faultline.sys.Userfaultfd;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.function.Consumer;

/**
 * One handler thread serving one userfaultfd (one part of guest RAM). It sleeps in one of two ways:
 * <ul>
 *   <li><b>in read()</b> ({@code blockingReads}, the userfaultfd opened blocking): when the handler has
 *       nothing to do but faults (no background prefetch, no spinning). Per fault that is read, install:
 *       two system calls, where sleeping in poll() takes three (poll, read, install).</li>
 *   <li><b>in poll()</b> (non-blocking userfaultfd), when it has background work: read every pending
 *       event, serve them, retry faults whose install met EAGAIN, do one step of background prefetch
 *       (async readahead, replay) and read again, so a fault never waits behind more than one prefetch
 *       chunk; spin on non-blocking reads for {@code spinNanos} after the last event; then poll().</li>
 * </ul>
 * A read takes up to 64 events; faults are served through the core, REMOVE events make their pages
 * MISSING again.
 *
 * <p>Stopping: {@link #requestStop()}, then a fault on the handler's <em>doorbell</em>, a page of its
 * own registered with its userfaultfd and never served ({@link UffdPager} rings it). Either way of
 * sleeping wakes on that event; the handler then unregisters the doorbell (through
 * {@code releaseDoorbell}), which releases the thread that rang it.
 */
final class UffdHandler implements Runnable {
    private final Userfaultfd uffd;
    private final Userfaultfd.Caller caller;
    private final FaultCore core;
    private final FaultCore.Lane lane;
    private final LaneStats stats;
    private final long hvaBase;
    private final long doorbell;
    private final Runnable releaseDoorbell;
    private final boolean blockingReads;
    private final long spinNanos;
    private final AtomicIntegerArray vcpuTids;
    private final Consumer<String> stopMachine;
    private final UffdEvents events = new UffdEvents(64);
    private final long[] retryGpa = new long[64];
    private final int[] retryVcpu = new int[64];
    private int retries;
    private long lastEvent;
    private volatile boolean stopping;
    private volatile RuntimeException failure;

    /**
     * @param doorbell        host address of the handler's doorbell page (registered with {@code uffd})
     * @param releaseDoorbell unregisters the doorbell (idempotent); run when the handler stops, however it stops
     * @param blockingReads   {@code uffd} is blocking and the handler sleeps in read(); needs no spinning
     */
    UffdHandler(Userfaultfd uffd, Userfaultfd.Caller caller, FaultCore core, FaultCore.Lane lane, long hvaBase, long doorbell,
                Runnable releaseDoorbell, boolean blockingReads, long spinNanos, AtomicIntegerArray vcpuTids,
                Consumer<String> stopMachine) {
        if (blockingReads && spinNanos > 0) throw new IllegalArgumentException("a handler that sleeps in read() cannot spin");
        this.uffd = uffd;
        this.caller = caller;
        this.core = core;
        this.lane = lane;
        this.stats = lane.stats();
        this.hvaBase = hvaBase;
        this.doorbell = doorbell;
        this.releaseDoorbell = releaseDoorbell;
        this.blockingReads = blockingReads;
        this.spinNanos = spinNanos;
        this.vcpuTids = vcpuTids;
        this.stopMachine = stopMachine;
    }

    void requestStop() { stopping = true; }

    /** Why the handler stopped serving, or null. */
    RuntimeException failure() { return failure; }

    private ThreadTimes start = ThreadTimes.NONE;

    /**
     * On the handler's own thread, before any fault can reach it: takes the thread's starting
     * {@link ThreadTimes}. Reading them allocates, and a thread that allocates may have to wait for a
     * garbage collection; once faults are pending that must not happen on the handler, because a Java
     * thread stopped in a userfault (a test touching RAM; never a vCPU, which waits inside KVM_RUN in
     * native code) cannot reach the safepoint the collection waits for.
     */
    void beforeServing() { start = ThreadTimes.ofCurrentThread(); }

    @Override
    public void run() {
        try {
            lastEvent = spinNanos > 0 ? System.nanoTime() : 0;
            while (!stopping && (blockingReads ? sleepInRead() : sleepInPoll())) {
                // each turn is its own method: the JIT compiles it like any hot method, where a loop
                // that never returns could only be compiled on-stack, late (after ~40k turns)
            }
        } catch (RuntimeException e) {
            failure = e;
            stopMachine.accept("paging handler " + lane.name() + " failed: " + e.getMessage());
        } finally {
            stats.threadTimes(ThreadTimes.ofCurrentThread().minus(start));
            try {
                releaseDoorbell.run();
            } catch (RuntimeException e) {
                if (failure == null) failure = e;
            }
        }
    }

    /** One turn when the handler sleeps in read(); false once it should stop. */
    private boolean sleepInRead() {
        if (retries > 0) {
            // An install met EAGAIN: a REMOVE event is being delivered. Take it without sleeping (the
            // madvise behind it finishes once it is read), then retry.
            if ((uffd.poll(caller, -1, 1) & Userfaultfd.READY_UFFD) != 0) readAndHandle();
            retryPending();
            return true;
        }
        readAndHandle();   // sleeps until at least one event is pending
        return true;
    }

    /** One turn when the handler sleeps in poll(); false once it should stop. */
    private boolean sleepInPoll() {
        int n = readAndHandle();
        // A full buffer may have left events behind: read again. Otherwise do not: with one vCPU
        // per handler nothing new can be pending until that vCPU has run again, so a second read()
        // would only return EAGAIN; poll() below returns at once if something did arrive.
        if (n == events.capacity()) return true;
        if (retries > 0) {
            retryPending();
            return true;
        }
        if (core.prefetchStep(lane) > 0) return true;
        if (spinNanos > 0 && System.nanoTime() - lastEvent < spinNanos) {
            Thread.onSpinWait();
            return true;
        }
        uffd.poll(caller, -1, -1);
        if (spinNanos > 0) lastEvent = System.nanoTime();
        return true;
    }

    private int readAndHandle() {
        int n = uffd.readEvents(caller, events);
        for (int i = 0; i < n; i++) handle(i);
        if (n > 0 && spinNanos > 0) lastEvent = System.nanoTime();
        return n;
    }

    private void handle(int i) {
        switch (events.event(i)) {
            case Userfaultfd.EVENT_PAGEFAULT -> {
                long hva = events.pagefaultAddress(i) & -FaultCore.PAGE;
                if (hva == doorbell) {
                    stopping = true;
                    return;
                }
                long flags = events.pagefaultFlags(i);
                stats.countEvent((flags & Userfaultfd.PAGEFAULT_FLAG_MINOR) != 0);
                long gpa = hva - hvaBase;
                int vcpu = vcpuOf(events.pagefaultTid(i));
                serve(gpa, vcpu);
            }
            case Userfaultfd.EVENT_REMOVE -> {
                long start = events.removeStart(i), end = events.removeEnd(i);
                stats.countRemove((end - start) / FaultCore.PAGE);
                core.invalidate(start - hvaBase, end - start);
            }
            default -> { /* UNMAP/REMAP/FORK are not requested; nothing to do */ }
        }
    }

    private void serve(long gpa, int vcpu) {
        int r = core.serveFault(lane, vcpu, gpa);
        if (r == FaultCore.RETRY) {
            if (retries == retryGpa.length) throw new IllegalStateException("more than " + retryGpa.length
                    + " faults wait for a retry after EAGAIN in " + lane.name());
            retryGpa[retries] = gpa;
            retryVcpu[retries++] = vcpu;
        } else if (r == FaultCore.GONE) {
            stopping = true;
        }
    }

    private void retryPending() {
        int n = retries;
        retries = 0;
        for (int i = 0; i < n; i++) serve(retryGpa[i], retryVcpu[i]);
    }

    private int vcpuOf(int tid) {
        for (int i = 0; i < vcpuTids.length(); i++) if (vcpuTids.get(i) == tid) return i;
        return -1;
    }
}
