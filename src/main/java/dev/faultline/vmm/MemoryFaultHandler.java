package dev.faultline.vmm;

import dev.faultline.hv.VcpuExit;

/**
 * Resolves a memory-fault exit on the faulting vCPU's own thread (the seeds' design: no wait queue,
 * no cross-thread wake-up). Implementations must be thread-safe: every vCPU calls in concurrently.
 */
public interface MemoryFaultHandler {
    /**
     * @return {@code null} when resolved (the vCPU re-enters and retries the access), otherwise a
     *     one-line reason to stop this vCPU (named in the report with the gpa, flags and errno)
     */
    String resolve(int vcpuIndex, VcpuExit.MemoryFault fault);

    /**
     * How the last fault {@link #resolve} resolved on vCPU {@code vcpuIndex} was resolved, for the exit
     * log ("installed a zero page", "converted to shared"...). Called on the same thread right after;
     * implementations return constants (no allocation per fault).
     */
    default String lastResolution(int vcpuIndex) { return "resolved"; }

    /**
     * A hypercall exit of vCPU {@code vcpuIndex} (KVM_HC_MAP_GPA_RANGE: explicit private/shared
     * conversion). Sets the guest's result with {@link VcpuExit.Hypercall#complete} and returns how it
     * was handled, or returns null when this handler does not handle it (the guest then gets -KVM_ENOSYS).
     */
    default String hypercall(int vcpuIndex, VcpuExit.Hypercall call) { return null; }

    /** The default: nothing can be resolved, the vCPU stops with a report. */
    MemoryFaultHandler NONE = (vcpu, fault) -> "no memory-fault handler is installed";
}
