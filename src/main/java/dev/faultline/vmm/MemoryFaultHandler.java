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

    /** The default: nothing can be resolved, the vCPU stops with a report. */
    MemoryFaultHandler NONE = (vcpu, fault) -> "no memory-fault handler is installed";
}
