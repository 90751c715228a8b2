package dev.faultline.sys;

/**
 * {@code struct uffdio_range} (16 bytes): the UFFDIO_WAKE and UFFDIO_UNREGISTER argument, and the
 * first member of several other uffdio structs.
 *
 * <pre>
 *  0 | start u64 |  8 | len u64 | 16
 * </pre>
 */
public final class UffdioRangeLayout {
    private UffdioRangeLayout() {}

    public static final long START = 0, LEN = 8;
    public static final long SIZE = 16;
}
