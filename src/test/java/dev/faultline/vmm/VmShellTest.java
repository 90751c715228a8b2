package dev.faultline.vmm;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.Caps;
import dev.faultline.hv.Hypervisor;
import dev.faultline.ref.RefHypervisor;
import org.junit.jupiter.api.Test;

/** A VM built ahead with its RAM and memslots (a VmShell) completes into a machine that runs like any other. */
class VmShellTest {
    private static final long MEM = 8L << 20;

    private static Workload workload() {
        return Workloads.build("phases", WorkloadParams.of(MEM, 2).withRounds(20));
    }

    private static String ramOfARunFromScratch(Workload w) {
        try (Hypervisor hv = new RefHypervisor(); Machine m = new Machine(hv, MachineSpec.of(MEM, 2, w.image()))) {
            return m.run().ramSha256();
        }
    }

    @Test
    void shouldRunAMachineCompletedFromAShellExactlyAsOneBuiltFromScratch() {
        Workload w = workload();
        try (Hypervisor hv = new RefHypervisor()) {
            VmShell shell = VmShell.create(hv, MEM, GuestRam.Backing.ANONYMOUS, Caps.VM_TYPE_DEFAULT, 0);
            MachineSpec spec = MachineSpec.of(MEM, 2, w.image());
            assertTrue(shell.fits(hv, spec));
            try (Machine m = new Machine(hv, spec, shell)) {
                assertEquals(2, m.vm().memorySlots().size(), "the shell's two RAM memslots");
                RunReport r = m.run();
                assertTrue(r.clean(), r.vcpus().toString());
                assertEquals(ramOfARunFromScratch(w), r.ramSha256());
            }
            assertFalse(shell.fits(hv, spec), "a shell is taken over once");
        }
    }

    @Test
    void shouldRefuseAndCloseAShellOfAnotherRamSize() {
        try (Hypervisor hv = new RefHypervisor()) {
            VmShell shell = VmShell.create(hv, 2 * MEM, GuestRam.Backing.ANONYMOUS, Caps.VM_TYPE_DEFAULT, 0);
            MachineSpec spec = MachineSpec.of(MEM, 2, workload().image());
            assertFalse(shell.fits(hv, spec));
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> new Machine(hv, spec, shell));
            assertTrue(e.getMessage().contains("RAM " + (2 * MEM) + " bytes") && e.getMessage().contains("RAM " + MEM + " bytes"), e.getMessage());
            assertFalse(shell.fits(hv, MachineSpec.of(2 * MEM, 2, workload().image())), "closed: nothing can be built from it any more");
        }
    }
}
