package dev.faultline.sys;

/**
 * {@code struct uffd_msg} (32 bytes), what read(2) on a userfaultfd returns, one per event.
 *
 * <pre>
 *  0 | event u8 | reserved1 u8 | reserved2 u16 | reserved3 u32 |
 *  8 +--- arg union (24 bytes) -------------------------------------------+
 *    | pagefault: flags u64 @8 (WRITE 1, WP 2, MINOR 4), address u64 @16,   |
 *    |            ptid u32 @24 (with UFFD_FEATURE_THREAD_ID)                |
 *    | fork:      ufd u32 @8                                                |
 *    | remap:     from u64 @8, to u64 @16, len u64 @24                      |
 *    | remove / unmap: start u64 @8, end u64 @16                            |
 * 32 +---------------------------------------------------------------------+
 * </pre>
 */
public final class UffdMsgLayout {
    private UffdMsgLayout() {}

    public static final long EVENT = 0;
    public static final long PAGEFAULT_FLAGS = 8, PAGEFAULT_ADDRESS = 16, PAGEFAULT_PTID = 24;
    public static final long FORK_UFD = 8;
    public static final long REMAP_FROM = 8, REMAP_TO = 16, REMAP_LEN = 24;
    public static final long REMOVE_START = 8, REMOVE_END = 16;
    public static final long SIZE = 32;
}
