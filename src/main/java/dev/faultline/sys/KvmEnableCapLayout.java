package dev.faultline.sys;

/**
 * {@code struct kvm_enable_cap} (104 bytes), the KVM_ENABLE_CAP argument.
 *
 * <pre>
 *  0 | cap u32 | flags u32 |  8 | args u64[4] | 40 | pad u8[64] | 104
 * </pre>
 */
public final class KvmEnableCapLayout {
    private KvmEnableCapLayout() {}

    public static final long CAP = 0, FLAGS = 4, ARGS = 8, PAD = 40;
    public static final int ARGS_COUNT = 4;
    public static final long SIZE = 104;
}
