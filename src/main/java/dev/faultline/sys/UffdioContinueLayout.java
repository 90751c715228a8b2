package dev.faultline.sys;

/**
 * {@code struct uffdio_continue} (32 bytes), the UFFDIO_CONTINUE argument (MINOR mode: map the page
 * already in the page cache).
 *
 * <pre>
 *  0 | range.start u64 |  8 | range.len u64 | 16 | mode u64 (DONTWAKE 1, WP 2) | 24 | mapped s64 (out) | 32
 * </pre>
 */
public final class UffdioContinueLayout {
    private UffdioContinueLayout() {}

    public static final long RANGE_START = 0, RANGE_LEN = 8, MODE = 16, MAPPED = 24;
    public static final long SIZE = 32;
}
