package dev.faultline.sys;

/**
 * {@code struct uffdio_copy} (40 bytes), the UFFDIO_COPY argument.
 *
 * <pre>
 *  0 | dst u64 |  8 | src u64 | 16 | len u64 | 24 | mode u64 (DONTWAKE 1, WP 2) |
 * 32 | copy s64 (out: bytes copied, or -errno) | 40
 * </pre>
 */
public final class UffdioCopyLayout {
    private UffdioCopyLayout() {}

    public static final long DST = 0, SRC = 8, LEN = 16, MODE = 24, COPY = 32;
    public static final long SIZE = 40;
}
