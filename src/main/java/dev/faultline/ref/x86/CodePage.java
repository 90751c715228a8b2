package dev.faultline.ref.x86;

import dev.faultline.ref.RefMemslot;
import java.lang.foreign.MemorySegment;

/**
 * Decoded instructions of one guest-physical code page, indexed by offset in the page and filled
 * lazily. Valid while the page's code version in its memslot equals {@link #version}: any write to
 * the page bumps the version (see {@link dev.faultline.ref.mmu.Mmu}), and the page is decoded again.
 */
final class CodePage {
    final long gpa;
    final RefMemslot slot;
    final int pageIndex;
    final int version;
    final MemorySegment segment;
    final long hostOffset;
    final Insn[] insns = new Insn[4096];

    /** {@code segment}/{@code hostOffset}: where the page's bytes are (the shared mapping, or the private store). */
    CodePage(long gpa, RefMemslot slot, int pageIndex, int version, MemorySegment segment, long hostOffset) {
        this.gpa = gpa;
        this.slot = slot;
        this.pageIndex = pageIndex;
        this.version = version;
        this.segment = segment;
        this.hostOffset = hostOffset;
    }
}
