package dev.faultline.hv;

import dev.faultline.sys.Errno;
import dev.faultline.sys.ErrnoException;

/**
 * The per-reason opt-in of seed 000 ({@link Caps#FAULTLINE_MEMORY_FAULT_EXIT}): KVM_ENABLE_CAP with
 * {@code args[0]} a bitmask of the reasons for which KVM_RUN fills {@code kvm_run.memory_fault}. For a
 * reason left out, the run fails with a bare EFAULT/EHWPOISON and no memory-fault data (the
 * exit reason is then stale, exactly as upstream's un-annotated -EFAULT paths). An unknown bit is
 * EINVAL. {@code KVM_CHECK_EXTENSION} on the capability answers {@link #VALID}.
 *
 * <p>Until the capability is enabled every reason is on (the ref backend behaves like
 * KVM_CAP_MEMORY_FAULT_INFO, which annotates unconditionally).
 */
public final class MemoryFaultReasons {
    private MemoryFaultReasons() {}

    /** Seed 000's only reason: a fault KVM cannot classify more precisely. */
    public static final long UNKNOWN = 1L;
    /** A missing page under {@link MemslotFlags#EXIT_ON_MISSING} (and a failed background fetch, seed 004). */
    public static final long MISSING = 1L << 1;
    /** A private/shared mismatch, or a private access where the slot has no private memory (implicit conversion). */
    public static final long PRIVATE_MISMATCH = 1L << 2;
    /** A hardware-poisoned host page (errno EHWPOISON). */
    public static final long POISON = 1L << 3;
    public static final long VALID = UNKNOWN | MISSING | PRIVATE_MISMATCH | POISON;

    /**
     * The bitwise validity check the seed meant: every bit of {@code reasons} must be a known reason.
     * (The seed wrote {@code !(reasons & !valid_flags)}: C's logical not makes {@code !valid_flags} 0 for
     * any non-zero mask, so every value passed.)
     */
    public static boolean isValid(long reasons) {
        return (reasons & ~VALID) == 0;
    }

    /** Throws EINVAL (as KVM_ENABLE_CAP would) when {@code reasons} has an unknown bit. */
    public static void check(long reasons, String subject) {
        if (!isValid(reasons)) {
            throw new ErrnoException("KVM_ENABLE_CAP", Errno.EINVAL, subject, String.format(
                    "memory-fault exit reasons 0x%x have unknown bits 0x%x (valid: 0x%x)", reasons, reasons & ~VALID, VALID));
        }
    }

    public static String describe(long reasons) {
        if (reasons == 0) return "none";
        StringBuilder sb = new StringBuilder();
        if ((reasons & UNKNOWN) != 0) sb.append("unknown|");
        if ((reasons & MISSING) != 0) sb.append("missing|");
        if ((reasons & PRIVATE_MISMATCH) != 0) sb.append("private_mismatch|");
        if ((reasons & POISON) != 0) sb.append("poison|");
        long rest = reasons & ~VALID;
        if (rest != 0) sb.append("0x").append(Long.toHexString(rest)).append('|');
        return sb.substring(0, sb.length() - 1);
    }
}
