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
import dev.faultline.paging.exit.ExitPager;
import dev.faultline.ref.RefHypervisor;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryFaultHandler;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
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

    /**
     * ExitPager, the piece lazy restore and post-copy share on ref: two vCPUs fault on their own
     * pages while another thread offers every page (a migration push). Each page is filled into RAM
     * exactly once, by a fault or by the offer, and every bit of the bitmap ends clear.
     */
    @Test
    void shouldInstallEveryPageOnceWhetherAFaultOrAnOfferGetsItFirst() throws Exception {
        int vcpus = 2;
        long pages = (MEM - MAIN) / 4096;
        Workload w = Workloads.build("seq-write", WorkloadParams.of(MEM, vcpus));
        StampSource source = new StampSource(MAIN, pages);
        ExitPager pager = new ExitPager(new FaultCore(source, MAIN, MEM - MAIN, vcpus, Prefetch.NONE, false));
        MachineSpec spec = MachineSpec.of(MEM, vcpus, w.image()).withMainSlot(0, pager.faultHandler()).withMemoryPreparer(pager).withExitLogLimit(0);
        try (RefHypervisor hv = new RefHypervisor(); Machine m = new Machine(hv, spec)) {
            // the image is the guest's, not the source's: resident from the start, as pre-copied pages are
            long imageEnd = (w.image().loadGpa() + w.image().size() + 0xfff) & ~0xfffL;
            for (long g = w.image().loadGpa(); g < imageEnd; g += 4096) {
                long p = pager.core().pageOf(g);
                assertTrue(pager.core().states().claim(p));
                pager.core().states().markPresent(p, 1);
            }
            Machine.Execution e = m.start();
            // every page but the image started missing (the vCPUs are already at work: at most that many now)
            assertTrue(pager.bitmap().missingPages() <= pages - (imageEnd - w.image().loadGpa()) / 4096);
            List<FaultCore.Lane> push = pager.addLanes("push", 64);
            MemorySegment buf = Arena.ofAuto().allocate(64 * 4096L, 4096);
            long offered = 0;
            for (long g = MEM - 64 * 4096L; g >= MAIN; g -= 64 * 4096L) {   // from the top: the vCPUs start at the bottom of their slices
                source.fill(g, buf, 0, 64 * 4096L);
                offered += pager.core().offer(push.get(0), g, 64, buf, 0);
            }
            RunReport r = e.await();
            assertTrue(r.clean(), () -> r.vcpus().toString());
            w.verify(m.ram().segment());
            assertEquals(0, pager.bitmap().missingPages());
            assertNull(pager.failureMessage());
            long faulted = 0;
            for (FaultCore.Lane lane : pager.core().lanes()) if (!lane.name().startsWith("push")) faulted += lane.stats().pagesInstalled();
            long image = (imageEnd - w.image().loadGpa()) / 4096;
            assertEquals(pages - image, faulted + offered, "each page installed once: by its fault or by the offer");
            assertTrue(faulted > 0 && offered > 0, "faults " + faulted + ", offered " + offered);
            long exits = r.exitCounts().getOrDefault("memory_fault", 0L);
            // an exit on a page the offer is installing waits for it and installs nothing
            assertTrue(exits >= faulted && exits - faulted <= offered, "exits " + exits + ", installed by faults " + faulted);
            // a page nobody wrote afterwards holds the source's bytes: the last page of RAM is past every slice's stamps
            assertEquals(StampSource.word(MEM - 4096, 8, 1), m.ram().segment().get(ValueLayout.JAVA_LONG, MEM - 4096 + 8));
        }
    }
}
