package dev.faultline.paging;

import java.lang.foreign.MemorySegment;

/**
 * How one delivery makes filled pages visible to the guest: UFFDIO_COPY from a staging buffer
 * (userfaultfd MISSING), UFFDIO_CONTINUE after writing the page cache through an alias mapping
 * (MINOR), or a "mark present" hook after writing guest RAM directly (exit delivery on ref).
 *
 * <p>One instance per lane, used by that lane's thread only: it may keep per-run state and
 * scratch, and must not allocate per call.
 */
public interface Installer {
    /** Where the source writes the run [gpa, gpa + len) that is about to be installed: the segment... */
    MemorySegment target();

    /** ...and the offset in it, for a run starting at {@code gpa} (remembered for {@link #install}). */
    long begin(long gpa, long len);

    /**
     * Installs [gpa, gpa + len), a tail of the run begun last. {@code zero}: the source said the run
     * is all zeros and {@link #target()} was not written (only when {@link #zeroNeedsFill()} is false).
     * @return bytes installed (possibly fewer than {@code len}), or a negative errno: -EEXIST (the first
     *     page is already mapped), -EAGAIN (the mapping is changing: retry after reading events),
     *     -ENOENT / -ESRCH (the address space is going away)
     */
    long install(long gpa, long len, boolean zero);

    /**
     * Wakes threads waiting on [gpa, gpa + len) without installing (after -EEXIST, or a fault on a
     * page already present); exit delivery marks the pages present again (idempotent).
     */
    void wake(long gpa, long len);

    /**
     * True when zeros must really be written to {@link #target()} (the target may hold old data: the
     * page cache in MINOR mode, guest RAM in exit delivery); false when the installer has its own
     * source of zeros.
     */
    boolean zeroNeedsFill();

    /**
     * True when {@link #installFrom} works: the install can read the bytes straight from any native
     * memory (UFFDIO_COPY), so a caller that already holds them there needs no copy into {@link #target()}.
     */
    default boolean installsFromMemory() { return false; }

    /**
     * Installs [gpa, gpa + len) from the native bytes at {@code srcAddress} (those of {@code gpa}),
     * without {@link #begin}; returns as {@link #install} does. Only when {@link #installsFromMemory()}.
     */
    default long installFrom(long gpa, long len, long srcAddress) {
        throw new UnsupportedOperationException(getClass().getSimpleName() + " installs only from its target()");
    }
}
