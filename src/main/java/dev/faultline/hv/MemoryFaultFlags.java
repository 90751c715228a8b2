package dev.faultline.hv;

/**
 * {@code kvm_run.memory_fault.flags}. PRIVATE is upstream; READ/WRITE/EXEC were proposed in the seeds
 * (bits 0-2 kept free for them, aligned with PROT_READ/WRITE/EXEC) and are reported by the ref backend;
 * USERFAULT is the KVM Userfault series' bit. Shared is the implied default (PRIVATE clear).
 */
public final class MemoryFaultFlags {
    private MemoryFaultFlags() {}

    public static final long READ = 1L;
    public static final long WRITE = 1L << 1;
    public static final long EXEC = 1L << 2;
    public static final long PRIVATE = 1L << 3;
    public static final long USERFAULT = 1L << 4;

    public static String describe(long flags) {
        if (flags == 0) return "none";
        StringBuilder sb = new StringBuilder();
        if ((flags & READ) != 0) sb.append("read|");
        if ((flags & WRITE) != 0) sb.append("write|");
        if ((flags & EXEC) != 0) sb.append("exec|");
        if ((flags & PRIVATE) != 0) sb.append("private|");
        if ((flags & USERFAULT) != 0) sb.append("userfault|");
        long rest = flags & ~(READ | WRITE | EXEC | PRIVATE | USERFAULT);
        if (rest != 0) sb.append("0x").append(Long.toHexString(rest)).append('|');
        return sb.substring(0, sb.length() - 1);
    }
}
