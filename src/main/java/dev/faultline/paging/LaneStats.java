package dev.faultline.paging;

import java.util.concurrent.TimeUnit;
import org.HdrHistogram.Histogram;

/**
 * What one lane (a handler thread, or a vCPU serving its own faults) did: counters and one
 * fault-latency histogram per vCPU, in nanoseconds. Written only by the lane's thread, without a
 * lock and without allocating; read after that thread has stopped.
 */
public final class LaneStats {
    /** Latencies above one minute are recorded as one minute. */
    public static final long MAX_NANOS = TimeUnit.MINUTES.toNanos(1);

    final Histogram[] latency;
    long faults, faultPages, prefetchPages, installCalls, bytes;
    long eexist, eagain, waits, presentWakes, removes, removedPages, minorEvents, missingEvents, gone, offerSkipped;
    private volatile ThreadTimes threadTimes = ThreadTimes.NONE;

    LaneStats(int vcpus) {
        latency = new Histogram[vcpus + 1];
        for (int i = 0; i < latency.length; i++) latency[i] = new Histogram(MAX_NANOS, 3);
    }

    /** vCPU index used for faults whose vCPU is unknown (a thread that is no vCPU). */
    public int otherIndex() { return latency.length - 1; }

    void recordFault(int vcpu, long nanos, int pages) {
        faults++;
        faultPages += pages;
        int v = vcpu < 0 || vcpu >= latency.length ? latency.length - 1 : vcpu;
        latency[v].recordValue(Math.min(Math.max(nanos, 0), MAX_NANOS));
    }

    /** A page-fault event of the given kind was read (uffd delivery). */
    public void countEvent(boolean minor) {
        if (minor) minorEvents++; else missingEvents++;
    }

    public void countRemove(long pages) {
        removes++;
        removedPages += pages;
    }

    public long faults() { return faults; }
    /** Pages installed while serving faults (the faulting page and its readahead). */
    public long faultPages() { return faultPages; }
    /** Pages installed in the background (async readahead, replay). */
    public long prefetchPages() { return prefetchPages; }
    public long pagesInstalled() { return faultPages + prefetchPages; }
    public long bytes() { return bytes; }
    public long installCalls() { return installCalls; }
    public long eexist() { return eexist; }
    /** Pages offered without a fault ({@link FaultCore#offer}) that a fault had claimed first: not installed twice. */
    public long offerSkipped() { return offerSkipped; }
    public long eagain() { return eagain; }
    public long waits() { return waits; }
    /** Faults on pages already present (queued before their install): woken again, not re-fetched. */
    public long presentWakes() { return presentWakes; }
    public long removes() { return removes; }
    public long removedPages() { return removedPages; }
    public long minorEvents() { return minorEvents; }
    public long missingEvents() { return missingEvents; }
    public Histogram latency(int vcpu) { return latency[vcpu]; }

    /** The serving thread's CPU time, run-queue wait and switches over its life, set when it stops (else NONE). */
    public ThreadTimes threadTimes() { return threadTimes; }
    public void threadTimes(ThreadTimes t) { threadTimes = t; }
}
