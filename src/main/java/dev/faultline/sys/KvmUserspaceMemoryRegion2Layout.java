package dev.faultline.sys;

/**
 * {@code struct kvm_userspace_memory_region2} (160 bytes), the KVM_SET_USER_MEMORY_REGION2 argument
 * (KVM_CAP_USER_MEMORY2). The first 32 bytes are the legacy layout.
 *
 * <pre>
 *  0 | slot u32 | flags u32 |
 *  8 | guest_phys_addr u64  |
 * 16 | memory_size u64      |
 * 24 | userspace_addr u64   |
 * 32 | guest_memfd_offset u64 |
 * 40 | guest_memfd u32 | pad1 u32 |
 * 48 | pad2 u64[14] (must be zero) |
 * 160
 * </pre>
 */
public final class KvmUserspaceMemoryRegion2Layout {
    private KvmUserspaceMemoryRegion2Layout() {}

    public static final long SLOT = 0, FLAGS = 4, GUEST_PHYS_ADDR = 8, MEMORY_SIZE = 16, USERSPACE_ADDR = 24,
            GUEST_MEMFD_OFFSET = 32, GUEST_MEMFD = 40, PAD1 = 44, PAD2 = 48;
    public static final long SIZE = 160;
}
