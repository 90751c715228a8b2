package dev.faultline.paging;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * One state byte per guest page of the paged range, changed only by compare-and-set, so that a page
 * is fetched and installed exactly once however many vCPUs or handler threads fault on it together:
 *
 * <pre>
 *   MISSING --claim (CAS, one winner)--> FETCHING --markPresent--> PRESENT
 *      ^                                    |                         |
 *      +------------ reset (failed install, REMOVE event) ------------+
 * </pre>
 *
 * A loser of the claim sees FETCHING and either waits for PRESENT (exit delivery) or drops its
 * event, because the winner's UFFDIO_COPY wakes every thread waiting on that page (uffd delivery).
 */
public final class PageStates {
    public static final byte MISSING = 0, FETCHING = 1, PRESENT = 2;
    private static final VarHandle STATE = MethodHandles.arrayElementVarHandle(byte[].class);

    private final byte[] states;
    /** PRESENT pages, kept with every change so that "is everything here?" costs no scan (LongAdder: no shared hot counter on the fault path). */
    private final java.util.concurrent.atomic.LongAdder present = new java.util.concurrent.atomic.LongAdder();

    public PageStates(long pages) {
        if (pages < 0 || pages > Integer.MAX_VALUE) throw new IllegalArgumentException("page count " + pages + " out of range");
        states = new byte[(int) pages];
    }

    public long pages() { return states.length; }

    public byte get(long page) {
        return (byte) STATE.getAcquire(states, (int) page);
    }

    public boolean isPresent(long page) { return get(page) == PRESENT; }

    /** MISSING → FETCHING; true for exactly one caller per residency of the page. */
    public boolean claim(long page) {
        return STATE.compareAndSet(states, (int) page, MISSING, FETCHING);
    }

    /** PRESENT → FETCHING: to check by a second install that a page thought present really is mapped. */
    public boolean reclaim(long page) {
        boolean won = STATE.compareAndSet(states, (int) page, PRESENT, FETCHING);
        if (won) present.decrement();
        return won;
    }

    /**
     * Claims pages {@code from}, {@code from + 1}, ... while they are MISSING, at most {@code max} of
     * them and not at or past {@code limit}. Returns how many were claimed (a contiguous run).
     */
    public int claimRun(long from, int max, long limit) {
        int n = 0;
        while (n < max && from + n < limit && claim(from + n)) n++;
        return n;
    }

    /** FETCHING → PRESENT for {@code count} pages from {@code first} (a page reset meanwhile stays MISSING). */
    public void markPresent(long first, long count) {
        int marked = 0;
        for (long p = first; p < first + count; p++) if (STATE.compareAndSet(states, (int) p, FETCHING, PRESENT)) marked++;
        if (marked > 0) present.add(marked);
    }

    /**
     * MISSING → PRESENT for {@code count} pages from {@code first}: pages written into RAM before
     * anything could fault on them (pre-copied before the guest starts). Pages not MISSING are left.
     * Returns how many changed.
     */
    public int markPresentBeforeStart(long first, long count) {
        int marked = 0;
        for (long p = first; p < first + count; p++) if (STATE.compareAndSet(states, (int) p, MISSING, PRESENT)) marked++;
        if (marked > 0) present.add(marked);
        return marked;
    }

    /** Back to MISSING, whatever the state: after a failed install, or when the kernel dropped the pages. */
    public void reset(long first, long count) {
        int dropped = 0;
        for (long p = first; p < first + count; p++) if ((byte) STATE.getAndSet(states, (int) p, MISSING) == PRESENT) dropped++;
        if (dropped > 0) present.add(-dropped);
    }

    /** Pages currently PRESENT, from a count kept with every change (no scan). */
    public long countPresent() {
        return present.sum();
    }

    /** Pages currently PRESENT by a scan of every state (tests check {@link #countPresent} against it). */
    public long scanPresent() {
        long n = 0;
        for (int i = 0; i < states.length; i++) if (get(i) == PRESENT) n++;
        return n;
    }
}
