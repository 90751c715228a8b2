package dev.faultline.sys;

/**
 * {@code struct kvm_dirty_log} (16 bytes), the KVM_GET_DIRTY_LOG argument.
 *
 * <pre>
 *  0 | slot u32 | padding1 u32 |  8 | dirty_bitmap (pointer, one bit per page of the slot) | 16
 * </pre>
 */
public final class KvmDirtyLogLayout {
    private KvmDirtyLogLayout() {}

    public static final long SLOT = 0, DIRTY_BITMAP = 8;
    public static final long SIZE = 16;
}
