package dev.faultline.ref;

import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.MemslotFlags;
import dev.faultline.hv.UserfaultBitmap;
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
    /** Missing host pages under {@link MemslotFlags#EXIT_ON_MISSING}; null otherwise. */
    public final UserfaultBitmap userfault;
    /** The private (guest_memfd-like) store of the slot and the offset of the slot's first page in it; null without one. */
    public final MemorySegment privateSegment;
    public final long privateOffset;
    /** Whether accesses to this slot can be private (the VM has memory attributes). */
    public final boolean privateCapable;
    /** Per page: hardware-poisoned host page (one bit per page, atomic updates). */
    private final long[] poisonBits;
    /** Pages marked poisoned: the slow path looks at {@link #poisonBits} only when this is non-zero. */
    volatile int poisonCount;

    RefMemslot(MemorySlot desc, boolean privateCapable, RefMemslot previous) {
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
        this.userfault = (flags & MemslotFlags.EXIT_ON_MISSING) != 0 ? desc.userfault() : null;
        this.privateCapable = privateCapable;
        if ((flags & MemslotFlags.GUEST_MEMFD) != 0) {
            this.privateSegment = ((RefGuestMemfd) desc.guestMemfd()).segment();
            this.privateOffset = desc.guestMemfdOffset();
        } else {
            this.privateSegment = null;
            this.privateOffset = 0;
        }
        // Poison is a property of the host pages: a slot that changes flags keeps its pages' marks.
        if (previous != null && previous.desc.memory() == desc.memory() && previous.desc.memoryOffset() == desc.memoryOffset()) {
            this.poisonBits = previous.poisonBits;
            this.poisonCount = previous.poisonCount;
        } else {
            this.poisonBits = new long[(int) ((npages + 63) >>> 6)];
        }
    }

    /** True when some per-page memory-fault state (missing, private, poison) must be checked on a TLB fill. */
    public boolean hasFaultState() {
        return userfault != null || privateCapable || poisonCount != 0;
    }

    public boolean isPoisoned(int page) {
        return poisonCount != 0 && ((long) LINES.getAcquire(poisonBits, page >>> 6) & (1L << (page & 63))) != 0;
    }

    /** Sets or clears a page's poison mark; returns whether it changed. */
    synchronized boolean setPoison(int page, boolean poisoned) {
        long bit = 1L << (page & 63);
        long old = (long) LINES.getAcquire(poisonBits, page >>> 6);
        if (((old & bit) != 0) == poisoned) return false;
        if (poisoned) LINES.getAndBitwiseOrRelease(poisonBits, page >>> 6, bit);
        else LINES.getAndBitwiseAndRelease(poisonBits, page >>> 6, ~bit);
        poisonCount += poisoned ? 1 : -1;
        return true;
    }

    /** Offset into {@link #privateSegment} of guest-physical address {@code gpa} (inside this slot). */
    public long privateHostOffset(long gpa) { return privateOffset + (gpa - this.gpa); }

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
