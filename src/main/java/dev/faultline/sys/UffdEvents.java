package dev.faultline.sys;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * A reusable buffer of {@code uffd_msg} records ({@link UffdMsgLayout}) that
 * {@link Userfaultfd#readEvents(Userfaultfd.Caller, UffdEvents)} fills without allocating.
 * Owned by one handler thread.
 */
public final class UffdEvents {
    private final MemorySegment buffer;
    private final int capacity;
    private int count;

    public UffdEvents(int capacity) {
        if (capacity <= 0) throw new IllegalArgumentException("capacity must be positive, got " + capacity);
        this.capacity = capacity;
        this.buffer = Arena.ofAuto().allocate(UffdMsgLayout.SIZE * capacity, 8);
    }

    public int capacity() { return capacity; }
    /** Events read by the last {@code readEvents}. */
    public int count() { return count; }
    MemorySegment buffer() { return buffer; }
    void count(int n) { count = n; }

    private long at(int i, long field) {
        if (i < 0 || i >= count) throw new IndexOutOfBoundsException("event " + i + " of " + count);
        return UffdMsgLayout.SIZE * i + field;
    }

    /** {@link Userfaultfd#EVENT_PAGEFAULT}, {@link Userfaultfd#EVENT_REMOVE}, ... */
    public int event(int i) { return buffer.get(ValueLayout.JAVA_BYTE, at(i, UffdMsgLayout.EVENT)) & 0xff; }
    /** PAGEFAULT: {@link Userfaultfd#PAGEFAULT_FLAG_WRITE} | WP | MINOR. */
    public long pagefaultFlags(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.PAGEFAULT_FLAGS)); }
    /** PAGEFAULT: the faulting address (page-aligned unless UFFD_FEATURE_EXACT_ADDRESS was negotiated). */
    public long pagefaultAddress(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.PAGEFAULT_ADDRESS)); }
    /** PAGEFAULT: the faulting thread's id (with UFFD_FEATURE_THREAD_ID; else 0). */
    public int pagefaultTid(int i) { return buffer.get(ValueLayout.JAVA_INT, at(i, UffdMsgLayout.PAGEFAULT_PTID)); }
    /** REMOVE / UNMAP: start of the range. */
    public long removeStart(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.REMOVE_START)); }
    /** REMOVE / UNMAP: end (exclusive) of the range. */
    public long removeEnd(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.REMOVE_END)); }
    public long remapFrom(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.REMAP_FROM)); }
    public long remapTo(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.REMAP_TO)); }
    public long remapLen(int i) { return buffer.get(ValueLayout.JAVA_LONG, at(i, UffdMsgLayout.REMAP_LEN)); }
    /** FORK: the new userfaultfd of the child. */
    public int forkUfd(int i) { return buffer.get(ValueLayout.JAVA_INT, at(i, UffdMsgLayout.FORK_UFD)); }
}
