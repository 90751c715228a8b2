package dev.faultline.migration;

import java.util.concurrent.atomic.AtomicLongArray;

/**
 * Which pages the destination holds in their switch-over version, one bit per page of RAM, set by
 * compare-and-set: the background push and the urgent-request servers both claim pages here, so the
 * push skips a page a request already sent (a request is always answered, even for a page the push
 * sent a moment before: the destination installs whichever arrives first, once).
 */
final class SentPages {
    private final AtomicLongArray bits;
    private final long pages;

    SentPages(long pages) {
        this.pages = pages;
        this.bits = new AtomicLongArray((int) ((pages + 63) >>> 6));
    }

    long pages() { return pages; }

    boolean isSent(long page) {
        return (bits.get((int) (page >>> 6)) & (1L << (page & 63))) != 0;
    }

    /** Sets the bit; true when this call set it. */
    boolean trySet(long page) {
        int w = (int) (page >>> 6);
        long bit = 1L << (page & 63);
        while (true) {
            long old = bits.get(w);
            if ((old & bit) != 0) return false;
            if (bits.compareAndSet(w, old, old | bit)) return true;
        }
    }

    void clear(long page) {
        int w = (int) (page >>> 6);
        long bit = 1L << (page & 63);
        while (true) {
            long old = bits.get(w);
            if ((old & bit) == 0 || bits.compareAndSet(w, old, old & ~bit)) return;
        }
    }

    /** The first page in [from, to) whose bit is clear, or -1. */
    long nextUnsent(long from, long to) {
        long p = from;
        while (p < to) {
            int w = (int) (p >>> 6);
            long free = ~bits.get(w) & (-1L << (p & 63));
            if (free != 0) {
                long q = ((long) w << 6) + Long.numberOfTrailingZeros(free);
                return q < to ? q : -1;
            }
            p = (long) (w + 1) << 6;
        }
        return -1;
    }

    long countSent() {
        long n = 0;
        for (int i = 0; i < bits.length(); i++) n += Long.bitCount(bits.get(i));
        return n;
    }
}
