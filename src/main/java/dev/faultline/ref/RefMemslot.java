package dev.faultline.ref;

import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.MemslotFlags;
import java.lang.foreign.MemorySegment;

/**
 * The ref backend's view of one installed memslot (KVM's {@code struct kvm_memory_slot}): the
 * userspace description plus per-page state the vCPUs keep about it.
 *
 * <p>Per-page state lives here so that the MMU's slow path can consult it in one place: today the
 * decoded-code marks (self-modifying code detection) and the dirty log; the memory-fault mechanisms
 * (missing pages, private/shared attributes, poison) add their own per-page arrays beside them and are
 * checked by {@link dev.faultline.ref.mmu.Mmu} when it fills a TLB entry.
 *
 * <p>Thread safety: immutable apart from the per-page arrays, which vCPU threads update with plain
 * or atomic writes as documented per field. A slot is replaced, never modified, when userspace
 * changes it.
 */
public final class RefMemslot {
    public final MemorySlot desc;
    public final int id;
    public final int flags;
    public final long gpa;
    public final long end;
    public final long npages;
    /** Host memory segment of the slot, and the offset in it of the slot's first byte. */
    public final MemorySegment segment;
    public final long segmentOffset;
    public final boolean readonly;
    public final boolean logDirty;
    /**
     * Per page: the number of times code decoded from this page was invalidated by a write. A vCPU
     * caching decoded instructions of a page remembers the version it decoded and re-decodes on change.
     */
    public final int[] codeVersion;
    /** Per page: non-zero while some vCPU may hold decoded instructions of the page. */
    public final byte[] codeMark;
    /**
     * Per page: which 64-byte lines hold bytes of decoded instructions (bit i = bytes 64i..64i+63).
     * A write to a code page invalidates its decoded code only when it touches one of these lines, so
     * data that shares a page with code (a C guest's .data right after .text) does not force re-decoding.
     */
    public final long[] codeLines;
    private static final java.lang.invoke.VarHandle LINES = java.lang.invoke.MethodHandles.arrayElementVarHandle(long[].class);
    /** Dirty log: one bit per page, set on the first write after the last {@code getDirtyLog}. */
    final long[] dirtyBits;

    RefMemslot(MemorySlot desc) {
        this.desc = desc;
        this.id = desc.slot();
        this.flags = desc.flags();
        this.gpa = desc.gpa();
        this.end = desc.end();
        this.npages = desc.size() >>> 12;
        if (npages > Integer.MAX_VALUE) throw new IllegalArgumentException("memslot " + id + " is too large");
        this.segment = desc.memory().segment();
        this.segmentOffset = desc.memoryOffset();
        this.readonly = (flags & MemslotFlags.READONLY) != 0;
        this.logDirty = (flags & MemslotFlags.LOG_DIRTY_PAGES) != 0;
        this.codeVersion = new int[(int) npages];
        this.codeMark = new byte[(int) npages];
        this.codeLines = new long[(int) npages];
        this.dirtyBits = logDirty ? new long[(int) ((npages + 63) >>> 6)] : null;
    }

    /** Whether the dirty log has page {@code page} (plain read: a racing set only costs a slow-path write). */
    public boolean isDirty(int page) {
        return dirtyBits != null && (dirtyBits[page >>> 6] & (1L << (page & 63))) != 0;
    }

    /** The line bits covering bytes [{@code offset}, {@code offset + length}) of a page (length 1..64). */
    public static long lines(int offset, int length) {
        int first = offset >>> 6, last = Math.min(4095, offset + length - 1) >>> 6;
        return (-1L >>> (63 - last + first)) << first;
    }

    /** Records decoded instruction bytes (atomic OR: vCPUs decode concurrently). */
    public void addCodeLines(int page, int offset, int length) {
        long bits = lines(offset, length);
        if ((codeLines[page] & bits) != bits) LINES.getAndBitwiseOr(codeLines, page, bits);
    }

    public boolean contains(long gpa) { return gpa >= this.gpa && gpa < end; }

    /** Offset into {@link #segment} of guest-physical address {@code gpa} (inside this slot). */
    public long hostOffset(long gpa) { return segmentOffset + (gpa - this.gpa); }

    public int pageIndex(long gpa) { return (int) ((gpa - this.gpa) >>> 12); }

    @Override
    public String toString() {
        return String.format("memslot %d [0x%x, 0x%x) flags 0x%x", id, gpa, end, flags);
    }
}
