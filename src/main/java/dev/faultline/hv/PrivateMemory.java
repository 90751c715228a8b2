package dev.faultline.hv;

/**
 * Constants of private (confidential) memory as the guest and the VMM see it on a
 * {@link Caps#VM_TYPE_SW_PROTECTED} VM of the ref backend; docs/memory-faults.md explains them.
 */
public final class PrivateMemory {
    private PrivateMemory() {}

    /**
     * The encryption bit of a guest page-table entry (SEV's C-bit): set = the access is private.
     * Advertised as SEV does, in CPUID 0x8000001F EBX[5:0]. It applies to the leaf of a translation
     * (the data access) and to every page-table page the walk reads (taken from the entry, or CR3,
     * that points to it).
     */
    public static final int ENCRYPTION_BIT = 51;
    public static final long ENCRYPTION_MASK = 1L << ENCRYPTION_BIT;

    /** KVM_HC_MAP_GPA_RANGE attributes (a2): page size in bits 0-1, encrypted (to private) in bit 4. */
    public static final long MAP_GPA_RANGE_PAGE_SZ_4K = 0, MAP_GPA_RANGE_PAGE_SZ_2M = 1, MAP_GPA_RANGE_PAGE_SZ_1G = 2;
    public static final long MAP_GPA_RANGE_ENCRYPTED = 1L << 4;
    /** kvm_run.hypercall.flags: the guest was in 64-bit mode. */
    public static final int EXIT_HYPERCALL_LONG_MODE = 1;
    /** Hypercall return values (include/uapi/linux/kvm_para.h): negated into RAX. */
    public static final long KVM_ENOSYS = 1000, KVM_EINVAL = 22;
    /** KVM_CAP_EXIT_HYPERCALL args[0] bit for KVM_HC_MAP_GPA_RANGE. */
    public static final long EXIT_HYPERCALL_MAP_GPA_RANGE = 1L << 12;
}
