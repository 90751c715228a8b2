package dev.faultline.paging;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicIntegerArray;

/**
 * Test source: every word of page gpa holds {@link #word(long, long, int)} of its address and the
 * source's current generation, and each fill is counted per page.
 */
final class StampSource implements PageSource {
    final AtomicIntegerArray fills;
    final AtomicInteger generation = new AtomicInteger(1);
    final long base;

    StampSource(long base, long pages) {
        this.base = base;
        this.fills = new AtomicIntegerArray((int) pages);
    }

    static long word(long gpa, long offset, int generation) {
        return ((gpa + offset) * 0x9E3779B97F4A7C15L) ^ ((long) generation << 56);
    }

    @Override
    public void fill(long gpa, MemorySegment dst, long dstOffset, long len) {
        int gen = generation.get();
        for (long p = 0; p < len; p += PAGE) {
            fills.incrementAndGet((int) ((gpa + p - base) / PAGE));
            for (long off = 0; off < PAGE; off += 8) {
                dst.set(ValueLayout.JAVA_LONG_UNALIGNED, dstOffset + p + off, word(gpa + p, off, gen));
            }
        }
    }

    int totalFills() {
        int n = 0;
        for (int i = 0; i < fills.length(); i++) n += fills.get(i);
        return n;
    }

    @Override
    public String describe() { return "stamps"; }
}
