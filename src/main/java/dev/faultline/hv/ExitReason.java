package dev.faultline.hv;

/** KVM exit reason numbers (include/uapi/linux/kvm.h); the ref backend reports the same numbers. */
public final class ExitReason {
    private ExitReason() {}

    public static final int UNKNOWN = 0;
    public static final int EXCEPTION = 1;
    public static final int IO = 2;
    public static final int HYPERCALL = 3;
    public static final int DEBUG = 4;
    public static final int HLT = 5;
    public static final int MMIO = 6;
    public static final int IRQ_WINDOW_OPEN = 7;
    public static final int SHUTDOWN = 8;
    public static final int FAIL_ENTRY = 9;
    public static final int INTR = 10;
    public static final int INTERNAL_ERROR = 17;
    public static final int SYSTEM_EVENT = 24;
    public static final int MEMORY_FAULT = 39;

    public static String name(int reason) {
        return switch (reason) {
            case UNKNOWN -> "unknown";
            case EXCEPTION -> "exception";
            case IO -> "io";
            case HYPERCALL -> "hypercall";
            case DEBUG -> "debug";
            case HLT -> "hlt";
            case MMIO -> "mmio";
            case IRQ_WINDOW_OPEN -> "irq_window_open";
            case SHUTDOWN -> "shutdown";
            case FAIL_ENTRY -> "fail_entry";
            case INTR -> "intr";
            case INTERNAL_ERROR -> "internal_error";
            case SYSTEM_EVENT -> "system_event";
            case MEMORY_FAULT -> "memory_fault";
            default -> "reason_" + reason;
        };
    }
}
