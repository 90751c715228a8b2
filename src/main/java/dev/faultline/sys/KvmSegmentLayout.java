package dev.faultline.sys;

/**
 * {@code struct kvm_segment} (24 bytes): the x86 descriptor cache of one segment register.
 *
 * <pre>
 *  0 +--------------------------------------------------------------+
 *    | base u64                                                     |
 *  8 +---------------------+------------------+---------+-----------+
 *    | limit u32           | selector u16     | type u8 | present u8|
 * 16 +------+------+-----+------+------+------+----------+----------+
 *    | dpl  | db   | s   | l    | g    | avl  | unusable | padding  |  (u8 each)
 * 24 +------+------+-----+------+------+------+----------+----------+
 * </pre>
 */
public final class KvmSegmentLayout {
    private KvmSegmentLayout() {}

    public static final long BASE = 0, LIMIT = 8, SELECTOR = 12, TYPE = 14, PRESENT = 15, DPL = 16, DB = 17,
            S = 18, L = 19, G = 20, AVL = 21, UNUSABLE = 22, PADDING = 23;
    public static final long SIZE = 24;
}
