package dev.faultline.snapshot;

import dev.faultline.paging.DemandPager;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.PageSourceException;
import dev.faultline.paging.PageStates;
import dev.faultline.vmm.MemoryPreparer;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Wraps the run's memory preparer: notes when the first vCPU thread is about to enter the guest,
 * and after a lazy run (userfaultfd unregistered, so RAM can be written and read from Java) copies
 * in every page the guest never touched, from the same checked source. It also starts a recording's
 * window when paging is set up, tells the restore's {@link Restore.Observer} of paging and the first
 * instruction, and notes when the last vCPU stopped (the guest's own run).
 */
final class FirstEntry {
    final AtomicLong at = new AtomicLong(Long.MAX_VALUE);
    final long recordMillis, started;
    final Restore.Observer observer;

    FirstEntry(long recordMillis, Restore.Observer observer, long started) {
        this.recordMillis = recordMillis;
        this.observer = observer;
        this.started = started;
    }

    volatile String fillFailure;
    volatile long fillNanos;
    final AtomicLong lastStop = new AtomicLong(Long.MIN_VALUE);
    volatile long prepared;

    MemoryPreparer wrap(Restore.PagerSlot slot) {
        return context -> {
            MemoryPreparer.Session s = slot.prepare(context);
            prepared = System.nanoTime();
            DemandPager pager = slot.pager();
            if (recordMillis > 0 && pager != null) pager.core().recordFor(recordMillis * 1_000_000L);
            if (pager != null) observer.pagingStarted(pager.core());
            return new MemoryPreparer.Session() {
                @Override
                public void vcpuThreadStarted(int index) {
                    s.vcpuThreadStarted(index);
                    long now = System.nanoTime();
                    if (at.getAndAccumulate(now, Math::min) == Long.MAX_VALUE) observer.firstInstruction(now - started);
                }

                @Override
                public void vcpuThreadStopping(int index) {
                    lastStop.accumulateAndGet(System.nanoTime(), Math::max);
                    s.vcpuThreadStopping(index);
                }

                @Override
                public void close() {
                    s.close();
                    if (pager != null && pager.failureMessage() == null) {
                        long t = System.nanoTime();
                        fillUntouched(pager.core(), context.ram().segment());
                        fillNanos = System.nanoTime() - t;
                    }
                }
            };
        };
    }

    private void fillUntouched(FaultCore core, MemorySegment ram) {
        PageStates st = core.states();
        long pages = st.pages();
        long p = 0;
        try {
            while (p < pages) {
                if (st.get(p) != PageStates.MISSING) { p++; continue; }
                long q = p;
                long chunkEnd = (core.gpaOf(p) / SnapshotFormat.CHUNK_BYTES + 1) * SnapshotFormat.CHUNK_BYTES;
                while (q < pages && st.get(q) == PageStates.MISSING && core.gpaOf(q) < chunkEnd) q++;
                long gpa = core.gpaOf(p), len = (q - p) * FaultCore.PAGE;
                if (!core.source().isZero(gpa, len)) core.source().fill(gpa, ram, gpa, len);
                p = q;
            }
        } catch (PageSourceException e) {
            fillFailure = "after the guest ended, copying the pages it never touched failed: " + e.getMessage();
        }
    }
}
