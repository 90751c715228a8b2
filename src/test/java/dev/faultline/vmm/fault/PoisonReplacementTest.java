package dev.faultline.vmm.fault;

import static dev.faultline.guest.asm.Mem.abs;
import static dev.faultline.guest.asm.Reg.RAX;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.guest.asm.Assembler;
import dev.faultline.hv.Hypervisor;
import dev.faultline.hv.Regs;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.sys.ErrnoException;
import dev.faultline.sys.Userfaultfd;
import dev.faultline.vmm.ExitLog;
import dev.faultline.vmm.VcpuOutcome;
import dev.faultline.vmm.VcpuResult;
import java.util.List;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Several vCPUs reading the same poisoned page that the VMM has a clean copy of: the page is replaced
 * once, every vCPU reads the clean data, and the vCPUs that found it replaced say so.
 */
class PoisonReplacementTest {

    private static Hypervisor open(String backend) {
        if (backend.equals("ref")) return new RefHypervisor();
        KvmHypervisor kvm;
        try {
            kvm = KvmHypervisor.open();
        } catch (ErrnoException e) {
            assumeTrue(false, "skipped: /dev/kvm is not usable here (" + e.getMessage() + ")");
            throw e;
        }
        boolean poison = Userfaultfd.offers(Userfaultfd.FEATURE_POISON);
        if (!poison) kvm.close();
        assumeTrue(poison, "skipped: userfaultfd lacks UFFD_FEATURE_POISON");
        return kvm;
    }

    @ParameterizedTest
    @ValueSource(strings = {"ref", "kvm"})
    void shouldReplaceASharedPoisonedPageOnceForEveryVcpu(String backend) {
        int vcpus = 4;
        try (Hypervisor hv = open(backend)) {
            for (int round = 0; round < 5; round++) {
                Assembler a = new Assembler(Scenarios.LOAD);
                a.mov(RAX, abs(64, Scenarios.DATA)).add(RAX, 1).hlt();
                FaultPlan plan = new FaultPlan(false, List.of(Scenarios.DATA), -1, 0, -1, false, List.of());
                Scenarios.Run r = Scenarios.run(hv, Scenarios.image(a, 1), vcpus, plan, Scenarios.DATA);
                int replaced = 0;
                for (int v = 0; v < vcpus; v++) {
                    VcpuResult res = r.vcpu(v);
                    assertEquals(VcpuOutcome.HALTED, res.outcome(), res.detail());
                    assertEquals(Scenarios.DATA_VALUE + 1, res.regs().gpr[Regs.RAX], "vCPU " + v + " read the clean copy");
                    for (ExitLog.Entry e : res.exits().entries()) {
                        if (FaultResolver.REPLACED.equals(e.resolution())) replaced++;
                        else if (e.resolution() != null) assertEquals(FaultResolver.ALREADY, e.resolution(), "vCPU " + v);
                    }
                }
                assertEquals(1, replaced, "the page was replaced once (round " + round + ")");
                assertEquals(Scenarios.DATA_VALUE, r.ramValues()[0], "RAM holds the clean copy");
            }
        }
    }
}
