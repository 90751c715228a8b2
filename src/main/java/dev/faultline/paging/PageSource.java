package dev.faultline.paging;

import java.lang.foreign.MemorySegment;

/**
 * Where the contents of guest-physical pages come from when they are first touched: zeros, a file
 * (a flat image of guest RAM, as a snapshot stores it), later a remote peer (post-copy migration).
 * The fault core asks for runs of whole pages; a source never decides when or where they are mapped.
 *
 * <p>Threading: {@link #fill} may be called by several threads at once for different ranges (each
 * handler thread or vCPU serves its own faults); it must not allocate per call on the hot path.
 */
public interface PageSource extends AutoCloseable {
    long PAGE = FaultCore.PAGE;

    /**
     * Writes the contents of guest-physical [gpa, gpa + len) to {@code dst} at {@code dstOffset}.
     * {@code gpa} and {@code len} are page-aligned.
     * @throws PageSourceException naming the source, the address and what failed
     */
    void fill(long gpa, MemorySegment dst, long dstOffset, long len);

    /**
     * True when [gpa, gpa + len) is known to read as zeros, so the core may install zero pages
     * without calling {@link #fill}. False when unknown.
     */
    default boolean isZero(long gpa, long len) { return false; }

    /**
     * The address in this process where the bytes of [gpa, gpa + len) can be read as they are (a source
     * that maps its file), so an installer that copies from memory (UFFDIO_COPY) takes them from there
     * without a fill into its staging buffer; 0 when the range is not mapped so (the default). Only
     * an address the installing system call may read: a Java access there is never made.
     */
    default long mappedAddress(long gpa, long len) { return 0; }

    /** One line for reports: "zero", "file /path (N bytes)". */
    String describe();

    @Override
    default void close() {}
}
