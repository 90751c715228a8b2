package dev.faultline.hv;

/** Capability numbers (KVM_CAP_*) and related flag values; see shared/design/uapi.md. */
public final class Caps {
    private Caps() {}

    public static final int USER_MEMORY = 3;
    public static final int SET_TSS_ADDR = 4;
    public static final int NR_VCPUS = 9;
    public static final int NR_MEMSLOTS = 10;
    public static final int MAX_VCPUS = 66;
    public static final int IMMEDIATE_EXIT = 136;
    public static final int EXIT_HYPERCALL = 201;
    public static final int USER_MEMORY2 = 231;
    public static final int MEMORY_FAULT_INFO = 232;
    public static final int MEMORY_ATTRIBUTES = 233;
    public static final int GUEST_MEMFD = 234;
    public static final int VM_TYPES = 235;
    public static final int PRE_FAULT_MEMORY = 236;
    public static final int GUEST_MEMFD_FLAGS = 244;

    /**
     * The per-reason memory-fault opt-in of seed 000 (KVM_CAP_X86_MEMORY_FAULT_EXIT there, never merged).
     * Upstream has no number for it; faultline uses one far above upstream's range so it can never
     * collide with a real capability. Only the ref backend implements it.
     */
    public static final int FAULTLINE_MEMORY_FAULT_EXIT = 0x10000 + 1;

    /** x86 VM types (KVM_CAP_VM_TYPES bit numbers). */
    public static final int VM_TYPE_DEFAULT = 0, VM_TYPE_SW_PROTECTED = 1, VM_TYPE_SEV = 2,
            VM_TYPE_SEV_ES = 3, VM_TYPE_SNP = 4, VM_TYPE_TDX = 5;

    public static final long GUEST_MEMFD_FLAG_MMAP = 1L, GUEST_MEMFD_FLAG_INIT_SHARED = 1L << 1;
    public static final long MEMORY_ATTRIBUTE_PRIVATE = 1L << 3;
}
