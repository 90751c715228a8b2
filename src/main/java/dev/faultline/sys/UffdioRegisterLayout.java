package dev.faultline.sys;

/**
 * {@code struct uffdio_register} (32 bytes), the UFFDIO_REGISTER argument.
 *
 * <pre>
 *  0 | range.start u64 |  8 | range.len u64 | 16 | mode u64 (MISSING 1, WP 2, MINOR 4) | 24 | ioctls u64 (out) | 32
 * </pre>
 */
public final class UffdioRegisterLayout {
    private UffdioRegisterLayout() {}

    public static final long RANGE_START = 0, RANGE_LEN = 8, MODE = 16, IOCTLS = 24;
    public static final long SIZE = 32;
}
