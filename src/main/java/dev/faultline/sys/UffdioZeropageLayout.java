package dev.faultline.sys;

/**
 * {@code struct uffdio_zeropage} (32 bytes), the UFFDIO_ZEROPAGE argument.
 *
 * <pre>
 *  0 | range.start u64 |  8 | range.len u64 | 16 | mode u64 (DONTWAKE 1) | 24 | zeropage s64 (out) | 32
 * </pre>
 */
public final class UffdioZeropageLayout {
    private UffdioZeropageLayout() {}

    public static final long RANGE_START = 0, RANGE_LEN = 8, MODE = 16, ZEROPAGE = 24;
    public static final long SIZE = 32;
}
