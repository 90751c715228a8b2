package dev.faultline.guest;

import static org.junit.jupiter.api.Assertions.*;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.faultline.hv.Regs;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.paging.FaultCore;
import dev.faultline.paging.KvmExitDeliveryTest;
import dev.faultline.paging.Prefetch;
import dev.faultline.paging.ZeroSource;
import dev.faultline.paging.uffd.UffdPager;
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

/**
 * A compiled C guest gives the same registers and RAM with and without exit on missing: on ref
 * (EXIT_ON_MISSING), and on kvm under exit delivery (a user-mode-only userfaultfd).
 */
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

    /**
     * A compiled C guest (its code and data loaded by the VMM, everything else demand-zero) ends with
     * the registers, reports and RAM of a run on plain memory, every page beyond its image served by
     * the vCPU after a memory-fault exit.
     */
    @ParameterizedTest
    @ValueSource(strings = {"sieve.c", "sort.c", "pages.c"})
    void shouldGiveACompiledCGuestTheResultOfAPlainRunOnKvmUnderExitDelivery(String name) throws Exception {
        assumeTrue(CGuest.unavailableReason().isEmpty(), () -> "skipped: " + CGuest.unavailableReason().orElse(""));
        GuestImage image = CGuest.build(Path.of("src/test/resources/guests").resolve(name), dir);
        long ram = 16L << 20;
        try (KvmHypervisor kvm = KvmExitDeliveryTest.kvmWithUserfaultfdOrSkip()) {
            RunReport plain;
            try (Machine m = new Machine(kvm, MachineSpec.of(ram, 1, image))) {
                plain = m.run();
            }
            FaultCore core = new FaultCore(ZeroSource.INSTANCE, BootProtocol.IMAGE_MIN_GPA, ram - BootProtocol.IMAGE_MIN_GPA, 1, Prefetch.NONE, false);
            UffdPager pager = new UffdPager(core, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
            RunReport paged;
            try (Machine m = new Machine(kvm, MachineSpec.of(ram, 1, image).withMemoryPreparer(pager).withMainSlot(0, pager.faultHandler()))) {
                paged = m.run();
            }
            assertTrue(plain.vcpus().get(0).outcome() == paged.vcpus().get(0).outcome(), () -> plain.vcpus() + " vs " + paged.vcpus());
            assertEquals(plain.vcpus().get(0).regs().gpr[Regs.RAX], paged.vcpus().get(0).regs().gpr[Regs.RAX], name + ": rax");
            assertArrayEquals(plain.vcpus().get(0).reports(), paged.vcpus().get(0).reports(), name + ": reports");
            assertEquals(plain.ramSha256(), paged.ramSha256(), name + ": RAM");
            assertNull(pager.failureMessage());
            // pages.c touches pages beyond its image, which only the vCPU's own exits bring in; the others stay in their image
            if (name.equals("pages.c")) {
                assertTrue(KvmExitDeliveryTest.faultsOnLane(core, "vcpu-0") > 0, "the guest's pages came through its own memory-fault exits");
            }
        }
    }
}
