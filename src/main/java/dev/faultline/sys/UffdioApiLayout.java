package dev.faultline.sys;

/**
 * {@code struct uffdio_api} (24 bytes), the UFFDIO_API argument.
 *
 * <pre>
 *  0 | api u64 (UFFD_API = 0xAA) |  8 | features u64 (in: requested, out: granted) | 16 | ioctls u64 (out) | 24
 * </pre>
 */
public final class UffdioApiLayout {
    private UffdioApiLayout() {}

    public static final long API = 0, FEATURES = 8, IOCTLS = 16;
    public static final long SIZE = 24;
}
