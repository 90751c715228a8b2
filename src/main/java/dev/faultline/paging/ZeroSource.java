package dev.faultline.paging;

import java.lang.foreign.MemorySegment;

/** Every page reads as zeros: the source of a fresh guest, and the fault core's cheapest case. */
public final class ZeroSource implements PageSource {
    public static final ZeroSource INSTANCE = new ZeroSource();

    private ZeroSource() {}

    @Override
    public void fill(long gpa, MemorySegment dst, long dstOffset, long len) {
        dst.asSlice(dstOffset, len).fill((byte) 0);
    }

    @Override
    public boolean isZero(long gpa, long len) { return true; }

    @Override
    public String describe() { return "zero"; }
}
