package dev.faultline.sys;

/**
 * {@code struct kvm_cpuid2} followed by {@code nent} {@code struct kvm_cpuid_entry2}, the argument of
 * KVM_GET_SUPPORTED_CPUID (system fd) and KVM_SET_CPUID2 (vCPU fd). The ioctl numbers encode only the
 * 8-byte header.
 *
 * <pre>
 * header:  0 | nent u32 | padding u32 | 8 entries...
 * entry (40 bytes):
 *          0 | function u32 | index u32 |  8 | flags u32 | eax u32 |
 *         16 | ebx u32 | ecx u32 | 24 | edx u32 | padding u32[3] | 40
 * </pre>
 */
public final class KvmCpuid2Layout {
    private KvmCpuid2Layout() {}

    public static final long NENT = 0, ENTRIES = 8;
    public static final long HEADER_SIZE = 8;

    public static final long ENTRY_FUNCTION = 0, ENTRY_INDEX = 4, ENTRY_FLAGS = 8, ENTRY_EAX = 12, ENTRY_EBX = 16,
            ENTRY_ECX = 20, ENTRY_EDX = 24;
    public static final long ENTRY_SIZE = 40;

    /** Bytes of a kvm_cpuid2 holding {@code nent} entries. */
    public static long sizeFor(int nent) { return HEADER_SIZE + ENTRY_SIZE * nent; }
}
