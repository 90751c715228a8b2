package dev.faultline.sys;

/**
 * {@code struct kvm_memory_attributes} (32 bytes), the KVM_SET_MEMORY_ATTRIBUTES argument.
 *
 * <pre>
 *  0 | address u64 |  8 | size u64 | 16 | attributes u64 (PRIVATE = 1&lt;&lt;3) | 24 | flags u64 (0) | 32
 * </pre>
 */
public final class KvmMemoryAttributesLayout {
    private KvmMemoryAttributesLayout() {}

    public static final long ADDRESS = 0, SIZE_FIELD = 8, ATTRIBUTES = 16, FLAGS = 24;
    public static final long SIZE = 32;
}
