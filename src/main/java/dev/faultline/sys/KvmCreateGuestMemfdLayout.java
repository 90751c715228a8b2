package dev.faultline.sys;

/**
 * {@code struct kvm_create_guest_memfd} (64 bytes), the KVM_CREATE_GUEST_MEMFD argument.
 *
 * <pre>
 *  0 | size u64 |  8 | flags u64 (GUEST_MEMFD_FLAG_MMAP 1, _INIT_SHARED 2) | 16 | reserved u64[6] | 64
 * </pre>
 */
public final class KvmCreateGuestMemfdLayout {
    private KvmCreateGuestMemfdLayout() {}

    public static final long SIZE_FIELD = 0, FLAGS = 8, RESERVED = 16;
    public static final long SIZE = 64;
}
