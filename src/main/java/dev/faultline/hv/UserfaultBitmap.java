package dev.faultline.hv;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;

/**
 * The "host page present" state of one memslot under {@link MemslotFlags#EXIT_ON_MISSING}, modelled
 * on the KVM Userfault series' {@code userfault_bitmap}: one bit per 4 KiB page of the slot, a set bit
 * means the page is missing, and a guest access to it exits to the vCPU's own thread with
 * {@link VcpuExit.MemoryFault} (EFAULT, flags READ/WRITE/EXEC) instead of blocking.
 *
 * <p>Protocol: the VMM writes the page's data into guest RAM first and then clears its bit with
 * {@link #markPresent} (a release: a vCPU that sees the bit clear sees the data). The backend reads
 * the bit on its translation slow path and never caches a translation of a missing page. Setting a
 * bit again ({@link #markMissing}) does not zap translations already cached; it takes effect for
 * every vCPU after the next memslot update of the slot (as a bitmap change needs a zap in KVM).
 *
 * <p>Thread safety: any thread; bits are changed with atomic read-modify-writes.
 */
public final class UserfaultBitmap {
    private static final VarHandle WORD = MethodHandles.arrayElementVarHandle(long[].class);
    private static final long PAGE = 4096;

    private final long gpa;
    private final long pages;
    private final long[] bits;

    private UserfaultBitmap(long gpa, long size, boolean missing) {
        if (((gpa | size) & (PAGE - 1)) != 0 || size <= 0 || (size >>> 12) > Integer.MAX_VALUE) {
            throw new IllegalArgumentException(String.format("userfault bitmap [0x%x, +0x%x) must be page-aligned and non-empty", gpa, size));
        }
        this.gpa = gpa;
        this.pages = size >>> 12;
        this.bits = new long[(int) ((pages + 63) >>> 6)];
        if (missing) markMissing(gpa, size);
    }

    /** A bitmap for the slot [{@code gpa}, {@code gpa + size}) with every page missing. */
    public static UserfaultBitmap allMissing(long gpa, long size) { return new UserfaultBitmap(gpa, size, true); }

    /** A bitmap for the slot [{@code gpa}, {@code gpa + size}) with every page present. */
    public static UserfaultBitmap allPresent(long gpa, long size) { return new UserfaultBitmap(gpa, size, false); }

    public long gpa() { return gpa; }
    public long size() { return pages << 12; }
    public boolean covers(long gpa) { return gpa >= this.gpa && gpa - this.gpa < size(); }

    /** Whether the page holding {@code gpa} is missing (an acquiring read). */
    public boolean isMissing(long gpa) {
        long p = page(gpa);
        return ((long) WORD.getAcquire(bits, (int) (p >>> 6)) & (1L << (p & 63))) != 0;
    }

    /** Clears the bits of every page in [{@code gpa}, {@code gpa + len}): call after the data is in RAM. */
    public void markPresent(long gpa, long len) {
        forRange(gpa, len, false);
    }

    /** Sets the bits of every page in [{@code gpa}, {@code gpa + len}). */
    public void markMissing(long gpa, long len) {
        forRange(gpa, len, true);
    }

    /** Pages currently missing. */
    public long missingPages() {
        long n = 0;
        for (int i = 0; i < bits.length; i++) n += Long.bitCount((long) WORD.getAcquire(bits, i));
        return n;
    }

    private void forRange(long from, long len, boolean set) {
        if (len <= 0) return;
        long first = page(from), last = page(from + len - 1);
        for (long p = first; p <= last; ) {
            int w = (int) (p >>> 6);
            long lastInWord = Math.min(last, ((long) w << 6) + 63);
            long mask = (-1L >>> (63 - (int) (lastInWord & 63))) & (-1L << (int) (p & 63));
            if (set) WORD.getAndBitwiseOrRelease(bits, w, mask);
            else WORD.getAndBitwiseAndRelease(bits, w, ~mask);
            p = lastInWord + 1;
        }
    }

    private long page(long gpa) {
        if (!covers(gpa)) {
            throw new IllegalArgumentException(String.format("gpa 0x%x is outside the userfault bitmap's slot [0x%x, 0x%x)",
                    gpa, this.gpa, this.gpa + size()));
        }
        return (gpa - this.gpa) >>> 12;
    }

    @Override
    public String toString() {
        return String.format("userfault bitmap [0x%x, 0x%x), %d of %d pages missing", gpa, gpa + size(), missingPages(), pages);
    }
}
