package dev.faultline.paging.exit;

import dev.faultline.paging.FaultCore;

/** The prologue both deliveries run before serving an exit: is the fault theirs to serve? */
final class FaultRange {
    private FaultRange() {}

    /**
     * Null when vCPU {@code vcpu} (of {@code vcpus}) may serve a fault at {@code gpa} through {@code core},
     * else the one-line reason to stop it (allocates only then).
     */
    static String refusal(FaultCore core, int vcpus, int vcpu, long gpa) {
        if (!core.contains(gpa & -FaultCore.PAGE)) {
            return String.format("gpa 0x%x is outside the demand-paged range [0x%x, 0x%x)", gpa, core.baseGpa(), core.endGpa());
        }
        if (vcpu < 0 || vcpu >= vcpus) return "vCPU " + vcpu + " has no paging lane";
        return null;
    }
}
