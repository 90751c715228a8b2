package dev.faultline.sys;

/**
 * {@code struct kvm_dtable} (16 bytes): GDTR or IDTR.
 *
 * <pre>
 *  0 | base u64 |  8 | limit u16 | padding u16[3] | 16
 * </pre>
 */
public final class KvmDtableLayout {
    private KvmDtableLayout() {}

    public static final long BASE = 0, LIMIT = 8;
    public static final long SIZE = 16;
}
