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
        return STATE.compareAndSet(states, (int) page, PRESENT, FETCHING);
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
        for (long p = first; p < first + count; p++) STATE.compareAndSet(states, (int) p, FETCHING, PRESENT);
    }

    /** Back to MISSING, whatever the state: after a failed install, or when the kernel dropped the pages. */
    public void reset(long first, long count) {
        for (long p = first; p < first + count; p++) STATE.setRelease(states, (int) p, MISSING);
    }

    /** Pages currently PRESENT (a scan, for reports and tests). */
    public long countPresent() {
        long n = 0;
        for (int i = 0; i < states.length; i++) if (get(i) == PRESENT) n++;
        return n;
    }
}
