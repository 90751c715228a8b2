package dev.faultline.vmm;

/** How one vCPU's run ended. */
public enum VcpuOutcome {
    /** The guest wrote its exit code to the done port. */
    DONE,
    /** HLT with nothing pending. */
    HALTED,
    /** Triple fault / shutdown exit. */
    SHUTDOWN,
    /** The backend could not emulate or run an instruction. */
    INTERNAL_ERROR,
    /** The hardware refused to enter the guest. */
    FAIL_ENTRY,
    /** A memory fault that no handler resolved (or that kept coming back). */
    UNRESOLVED_MEMORY_FAULT,
    /** An exit this VMM does not handle. */
    UNHANDLED_EXIT,
    /** Stopped from outside (timeout, another vCPU's failure, a pause). */
    STOPPED,
    /** KVM_RUN or a handler failed with an error. */
    ERROR;

    /** True when the guest finished on its own terms. */
    public boolean isClean() {
        return this == DONE || this == HALTED;
    }
}
