package dev.faultline.paging;

import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.workload.Workload;
import dev.faultline.guest.workload.WorkloadParams;
import dev.faultline.guest.workload.Workloads;
import dev.faultline.hv.MemorySlot;
import dev.faultline.hv.UserfaultBitmap;
import dev.faultline.paging.exit.BlockingFaultHandler;
import dev.faultline.paging.exit.ExitFaultHandler;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The paging core's exit and blocking deliveries on the ref backend: the main slot is under
 * EXIT_ON_MISSING with a userfault bitmap, and the deliveries' PresentHook clears its bits.
 */
class RefExitOnMissingDeliveryTest {
    static final long MEM = 32L << 20, MAIN = BootProtocol.IMAGE_MIN_GPA;

    @ParameterizedTest
    @CsvSource({"exit,1", "exit,2", "blocking,1", "blocking,2"})
    void shouldRunSeqWriteWithEveryTouchedPageInstalledExactlyOnce(String delivery, int vcpus) {
        Workload w = Workloads.build("seq-write", WorkloadParams.of(MEM, vcpus));
        long imageEnd = (w.image().loadGpa() + w.image().size() + 0xfff) & ~0xfffL;
        UserfaultBitmap missing = UserfaultBitmap.allMissing(MAIN, MEM - MAIN);
        missing.markPresent(w.image().loadGpa(), imageEnd - w.image().loadGpa());   // the image is resident, the rest is paged
        FaultCore core = new FaultCore(ZeroSource.INSTANCE, MAIN, MEM - MAIN, vcpus, Prefetch.NONE, false);
        AtomicReference<MemoryFaultHandler> handler = new AtomicReference<>();
        MemoryPreparer preparer = c -> {
            MemorySlot main = c.vm().slotAt(MAIN);
            c.vm().setMemorySlot(main.withUserfault(missing));
            return () -> {};
        };
        // The handler needs RAM, which the machine allocates: a forwarding handler is given to the spec.
        MemoryFaultHandler forward = (v, f) -> handler.get().resolve(v, f);
        MachineSpec spec = MachineSpec.of(MEM, vcpus, w.image()).withMainSlot(0, forward).withMemoryPreparer(preparer).withExitLogLimit(0);
        try (RefHypervisor hv = new RefHypervisor(); Machine m = new Machine(hv, spec)) {
            BlockingFaultHandler blocking = null;
            if (delivery.equals("exit")) handler.set(new ExitFaultHandler(core, m.ram().memory(), vcpus, missing::markPresent));
            else handler.set(blocking = new BlockingFaultHandler(core, m.ram().memory(), vcpus, missing::markPresent));
            java.util.List<java.util.List<Long>> expected = new java.util.ArrayList<>();
            for (int v = 0; v < vcpus; v++) expected.add(w.expectedReports(v, m.ram().segment()));
            RunReport r = m.run();
            if (blocking != null) blocking.close();
            assertTrue(r.clean(), () -> r.vcpus().toString());
            w.verify(m.ram().segment());
            long faults = r.exitCounts().getOrDefault("memory_fault", 0L);
            long installed = 0;
            for (FaultCore.Lane lane : core.lanes()) installed += lane.stats().pagesInstalled();
            assertEquals(faults, installed, "one install per memory-fault exit (each vCPU touches its own slice)");
            assertTrue(faults >= (MEM - imageEnd) / 4096 / 2, "the guest's pages came through exits: " + faults);
            assertEquals(missing.missingPages(), (MEM - MAIN) / 4096 - (imageEnd - w.image().loadGpa()) / 4096 - installed);
        }
    }
}
