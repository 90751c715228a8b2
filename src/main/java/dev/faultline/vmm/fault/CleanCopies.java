package dev.faultline.vmm.fault;

import dev.faultline.paging.PageSource;
import dev.faultline.paging.PageSourceException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;

/**
 * The pages the VMM holds a clean copy of: the pages it loaded before the guest ran (the image),
 * captured when the run is prepared. As a {@link PageSource} it gives the copy for those pages and
 * zeros for every other page (which held nothing); pages listed as unavailable fail, as a page server
 * that cannot provide them would. Immutable after construction; lookups allocate nothing.
 */
public final class CleanCopies implements PageSource {
    private final long[] gpas;          // sorted page addresses
    private final byte[][] pages;
    private final long[] unavailable;   // sorted page addresses the source cannot provide

    CleanCopies(long[] gpas, byte[][] pages, long[] unavailable) {
        this.gpas = gpas;
        this.pages = pages;
        this.unavailable = unavailable.clone();
        Arrays.sort(this.unavailable);
    }

    /** Copies every page of [from, to) of {@code ram} that is not all zeros. */
    static CleanCopies capture(MemorySegment ram, long from, long to, long[] unavailable) {
        long[] g = new long[16];
        byte[][] p = new byte[16][];
        int n = 0;
        MemorySegment zero = MemorySegment.ofArray(new byte[(int) PAGE]);
        for (long gpa = from; gpa < to; gpa += PAGE) {
            MemorySegment page = ram.asSlice(gpa, PAGE);
            if (page.mismatch(zero) == -1) continue;
            if (n == g.length) { g = Arrays.copyOf(g, n * 2); p = Arrays.copyOf(p, n * 2); }
            g[n] = gpa;
            p[n] = page.toArray(ValueLayout.JAVA_BYTE);
            n++;
        }
        return new CleanCopies(Arrays.copyOf(g, n), Arrays.copyOf(p, n), unavailable);
    }

    public int count() { return gpas.length; }

    /** The clean copy of the page at {@code gpaPage}, or null when the VMM has none (it held nothing, or not known). */
    public byte[] copyOf(long gpaPage) {
        int i = Arrays.binarySearch(gpas, gpaPage);
        return i >= 0 ? pages[i] : null;
    }

    /** Whether the page at {@code gpaPage} held data when the run was prepared. */
    public boolean hadData(long gpaPage) { return copyOf(gpaPage) != null; }

    @Override
    public void fill(long gpa, MemorySegment dst, long dstOffset, long len) {
        for (long off = 0; off < len; off += PAGE) {
            long page = gpa + off;
            if (Arrays.binarySearch(unavailable, page) >= 0) {
                throw new PageSourceException(String.format("clean copies: page 0x%x cannot be provided", page));
            }
            byte[] copy = copyOf(page);
            if (copy == null) dst.asSlice(dstOffset + off, PAGE).fill((byte) 0);
            else MemorySegment.copy(copy, 0, dst, ValueLayout.JAVA_BYTE, dstOffset + off, (int) PAGE);
        }
    }

    @Override
    public boolean isZero(long gpa, long len) {
        for (long off = 0; off < len; off += PAGE) {
            if (copyOf(gpa + off) != null || Arrays.binarySearch(unavailable, gpa + off) >= 0) return false;
        }
        return true;
    }

    @Override
    public String describe() { return "clean copies of " + gpas.length + " image page(s), zeros elsewhere"; }
}
