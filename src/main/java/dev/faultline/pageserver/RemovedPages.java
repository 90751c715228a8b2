package dev.faultline.pageserver;

import dev.faultline.paging.PageSource;
import java.lang.foreign.MemorySegment;

/**
 * One VM's view of the memory file: the file, except pages the VMM gave back (a balloon's
 * UFFD_EVENT_REMOVE), which read as zeros from then on, as Firecracker requires. Written and read by
 * the VM's one handler thread only (no lock); one bit per page of the VM's space.
 */
final class RemovedPages implements PageSource {
    private final PageSource file;
    private final long[] bits;
    private final long pages;
    private long removed;

    RemovedPages(PageSource file, long spaceBytes) {
        this.file = file;
        this.pages = spaceBytes / Handshake.PAGE;
        this.bits = new long[(int) ((pages + 63) / 64)];
    }

    /** Pages [offset, offset + len) of the space read as zeros from now on. */
    void remove(long offset, long len) {
        long first = Math.max(0, offset / Handshake.PAGE), end = Math.min(pages, (offset + len + Handshake.PAGE - 1) / Handshake.PAGE);
        for (long p = first; p < end; p++) {
            if ((bits[(int) (p >>> 6)] & (1L << p)) == 0) removed++;
            bits[(int) (p >>> 6)] |= 1L << p;
        }
    }

    /** Pages removed so far. */
    long removedPages() { return removed; }

    private boolean isRemoved(long page) { return (bits[(int) (page >>> 6)] & (1L << page)) != 0; }

    private boolean anyRemoved(long offset, long len) {
        if (removed == 0) return false;
        for (long p = offset / Handshake.PAGE, end = (offset + len) / Handshake.PAGE; p < end; p++) if (isRemoved(p)) return true;
        return false;
    }

    @Override
    public void fill(long offset, MemorySegment dst, long dstOffset, long len) {
        file.fill(offset, dst, dstOffset, len);
        if (!anyRemoved(offset, len)) return;
        for (long p = 0; p < len; p += Handshake.PAGE) {
            if (isRemoved((offset + p) / Handshake.PAGE)) dst.asSlice(dstOffset + p, Handshake.PAGE).fill((byte) 0);
        }
    }

    @Override
    public boolean isZero(long offset, long len) {
        if (removed == 0) return file.isZero(offset, len);
        for (long p = offset / Handshake.PAGE, end = (offset + len) / Handshake.PAGE; p < end; p++) if (!isRemoved(p)) return file.isZero(offset, len);
        return true;
    }

    @Override
    public long mappedAddress(long offset, long len) {
        return anyRemoved(offset, len) ? 0 : file.mappedAddress(offset, len);
    }

    @Override
    public String describe() { return file.describe(); }
}
