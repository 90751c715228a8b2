package dev.faultline.guest;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.hv.Regs;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.vmm.ExitLog;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuOutcome;
import dev.faultline.vmm.VcpuResult;
import dev.faultline.vmm.fault.FaultPlan;
import dev.faultline.vmm.fault.FaultResolver;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** A compiled C guest gives the same registers and RAM on ref with and without exit on missing. */
class CGuestExitOnMissingTest {
    private static final long MEM = 16L << 20;
    @TempDir Path dir;

    private static RunReport run(GuestImage image, FaultPlan plan, int vcpus) {
        MachineSpec spec = MachineSpec.of(MEM, vcpus, image).withExitLogLimit(100_000);
        if (plan != null) {
            FaultResolver r = new FaultResolver(plan, vcpus);
            spec = spec.withMainSlot(0, r).withMemoryPreparer(r).withVmType(r.vmType());
        }
        try (RefHypervisor hv = new RefHypervisor(); Machine m = new Machine(hv, spec)) {
            return m.run();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"sieve.c", "sort.c", "pages.c"})
    void shouldGiveTheSameResultWithAndWithoutExitOnMissing(String name) throws Exception {
        assumeTrue(CGuest.unavailableReason().isEmpty(), () -> "skipped: " + CGuest.unavailableReason().orElse(""));
        GuestImage image = CGuest.build(Path.of("src/test/resources/guests").resolve(name), dir);
        FaultPlan missing = new FaultPlan(true, List.of(), -1, 0, -1, false, List.of());
        // One vCPU: the C guests share their globals, so with several vCPUs their RAM is racy by design.
        for (int vcpus : new int[] {1}) {
            RunReport plain = run(image, null, vcpus);
            RunReport paged = run(image, missing, vcpus);
            assertTrue(plain.clean(), () -> name + ": " + plain.vcpus());
            assertTrue(paged.clean(), () -> name + " with exit on missing: " + paged.vcpus());
            assertEquals(plain.ramSha256(), paged.ramSha256(), name + " on " + vcpus + " vCPU(s): RAM differs with exit on missing");
            long faults = 0;
            for (int v = 0; v < vcpus; v++) {
                VcpuResult a = plain.vcpus().get(v), b = paged.vcpus().get(v);
                assertEquals(VcpuOutcome.HALTED, b.outcome());
                assertEquals(a.regs().gpr[Regs.RAX], b.regs().gpr[Regs.RAX], name + " vCPU " + v);
                assertArrayEquals(a.reports(), b.reports());
                for (ExitLog.Entry e : b.exits().entries()) {
                    if (!e.exit().reason().equals("memory_fault")) continue;
                    faults++;
                    assertEquals("EFAULT", e.exit().fields().get("errno"));
                    assertEquals("0x1000", e.exit().fields().get("size"));
                    assertTrue(List.of(FaultResolver.INSTALLED_COPY, FaultResolver.INSTALLED_ZERO, FaultResolver.ALREADY)
                            .contains(e.resolution()), e.resolution());
                }
            }
            assertTrue(faults > 0, "the guest's pages came through memory-fault exits");
            assertEquals(0, plain.exitCounts().getOrDefault("memory_fault", 0L));
        }
    }
}
