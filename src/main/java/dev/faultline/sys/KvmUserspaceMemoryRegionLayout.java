package dev.faultline.sys;

/**
 * {@code struct kvm_userspace_memory_region} (32 bytes), the legacy KVM_SET_USER_MEMORY_REGION argument.
 *
 * <pre>
 *  0 | slot u32 | flags u32 |  8 | guest_phys_addr u64 | 16 | memory_size u64 | 24 | userspace_addr u64 | 32
 * </pre>
 * {@code slot} carries the address-space id in bits 16-31.
 */
public final class KvmUserspaceMemoryRegionLayout {
    private KvmUserspaceMemoryRegionLayout() {}

    public static final long SLOT = 0, FLAGS = 4, GUEST_PHYS_ADDR = 8, MEMORY_SIZE = 16, USERSPACE_ADDR = 24;
    public static final long SIZE = 32;
}
