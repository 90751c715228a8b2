package dev.faultline.sys;

/**
 * {@code struct iovec} (16 bytes).
 *
 * <pre>
 *  0 | iov_base (pointer) |  8 | iov_len u64 | 16
 * </pre>
 */
public final class IovecLayout {
    private IovecLayout() {}

    public static final long BASE = 0, LEN = 8;
    public static final long SIZE = 16;
}
