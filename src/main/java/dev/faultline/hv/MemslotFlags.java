package dev.faultline.hv;

/** Memory slot flags (KVM_MEM_*). EXIT_ON_MISSING is the seeds' proposal, implemented by the ref backend only. */
public final class MemslotFlags {
    private MemslotFlags() {}

    public static final int LOG_DIRTY_PAGES = 1;
    public static final int READONLY = 1 << 1;
    public static final int GUEST_MEMFD = 1 << 2;
    /** Seed 000/003: a missing host page exits to the vCPU's own thread instead of blocking. Never merged. */
    public static final int EXIT_ON_MISSING = 1 << 3;
}
