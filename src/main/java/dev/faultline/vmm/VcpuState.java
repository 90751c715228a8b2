package dev.faultline.vmm;

import dev.faultline.hv.Regs;
import dev.faultline.hv.Sregs;

/** The architectural state of one vCPU that a snapshot or a migration carries: registers and special registers. */
public record VcpuState(Regs regs, Sregs sregs) {
    public VcpuState {
        regs = regs.copy();
    }

    @Override
    public Regs regs() {
        return regs.copy();
    }
}
