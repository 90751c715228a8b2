package dev.faultline.paging.uffd;

import dev.faultline.paging.FaultCore;
import dev.faultline.paging.LaneStats;
import dev.faultline.sys.Libc;
import dev.faultline.sys.UffdEvents;
import dev.faultline.sys.Userfaultfd;
import java.util.concurrent.atomic.AtomicIntegerArray;
import java.util.function.Consumer;

/**
 * One handler thread serving one userfaultfd (one part of guest RAM). The loop, cheapest first:
 * <ol>
 *   <li>read every pending event in one non-blocking read() and serve them (faults: the core; REMOVE:
 *       the pages are MISSING again);</li>
 *   <li>retry faults whose install met EAGAIN (the REMOVE that caused it has been read by now);</li>
 *   <li>one step of background prefetch (async readahead, replay), then read events again, so a
 *       fault never waits behind more than one prefetch chunk;</li>
 *   <li>spin on non-blocking reads for {@code spinNanos} after the last event, because waking a thread
 *       that sleeps in poll() is most of the cost of a fault on these machines (docs/paging.md);</li>
 *   <li>sleep in poll() on the userfaultfd and the stop eventfd.</li>
 * </ol>
 */
final class UffdHandler implements Runnable {
    private final Userfaultfd uffd;
    private final Userfaultfd.Caller caller;
    private final FaultCore core;
    private final FaultCore.Lane lane;
    private final LaneStats stats;
    private final long hvaBase;
    private final int stopFd;
    private final long spinNanos;
    private final AtomicIntegerArray vcpuTids;
    private final Consumer<String> stopMachine;
    private final UffdEvents events = new UffdEvents(64);
    private final long[] retryGpa = new long[64];
    private final int[] retryVcpu = new int[64];
    private int retries;
    private volatile boolean stopping;
    private volatile RuntimeException failure;

    UffdHandler(Userfaultfd uffd, Userfaultfd.Caller caller, FaultCore core, FaultCore.Lane lane, long hvaBase, int stopFd,
                long spinNanos, AtomicIntegerArray vcpuTids, Consumer<String> stopMachine) {
        this.uffd = uffd;
        this.caller = caller;
        this.core = core;
        this.lane = lane;
        this.stats = lane.stats();
        this.hvaBase = hvaBase;
        this.stopFd = stopFd;
        this.spinNanos = spinNanos;
        this.vcpuTids = vcpuTids;
        this.stopMachine = stopMachine;
    }

    void requestStop() { stopping = true; }

    /** Why the handler stopped serving, or null. */
    RuntimeException failure() { return failure; }

    @Override
    public void run() {
        try {
            loop();
        } catch (RuntimeException e) {
            failure = e;
            stopMachine.accept("paging handler " + lane.name() + " failed: " + e.getMessage());
        }
    }

    private void loop() {
        long lastEvent = System.nanoTime();
        while (!stopping) {
            int n = uffd.readEvents(caller, events);
            if (n > 0) {
                for (int i = 0; i < n; i++) handle(i);
                lastEvent = System.nanoTime();
                continue;
            }
            if (retries > 0) {
                retryPending();
                continue;
            }
            if (core.prefetchStep(lane) > 0) continue;
            if (spinNanos > 0 && System.nanoTime() - lastEvent < spinNanos) {
                Thread.onSpinWait();
                continue;
            }
            int ready = uffd.poll(caller, stopFd, -1);
            if ((ready & Userfaultfd.READY_OTHER) != 0) return;
            lastEvent = System.nanoTime();
        }
    }

    private void handle(int i) {
        switch (events.event(i)) {
            case Userfaultfd.EVENT_PAGEFAULT -> {
                long flags = events.pagefaultFlags(i);
                stats.countEvent((flags & Userfaultfd.PAGEFAULT_FLAG_MINOR) != 0);
                long gpa = (events.pagefaultAddress(i) & -FaultCore.PAGE) - hvaBase;
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

    static void signal(int eventFd) {
        java.lang.foreign.MemorySegment one = java.lang.foreign.Arena.ofAuto().allocate(8, 8);
        one.set(java.lang.foreign.ValueLayout.JAVA_LONG, 0, 1);
        Libc.write(Libc.errnoSegment(), eventFd, one, 8);
    }
}
