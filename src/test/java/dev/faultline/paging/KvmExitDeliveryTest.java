package dev.faultline.paging;

import static dev.faultline.guest.asm.Reg.*;
import static org.junit.jupiter.api.Assertions.*;

import dev.faultline.guest.BootProtocol;
import dev.faultline.guest.GuestImage;
import dev.faultline.guest.asm.Assembler;
import dev.faultline.guest.asm.Label;
import dev.faultline.hv.Regs;
import dev.faultline.kvm.KvmHypervisor;
import dev.faultline.paging.uffd.UffdPager;
import dev.faultline.sys.Libc;
import dev.faultline.vmm.GuestRam;
import dev.faultline.vmm.Machine;
import dev.faultline.vmm.MachineSpec;
import dev.faultline.vmm.MemoryPreparer;
import dev.faultline.vmm.RunReport;
import dev.faultline.vmm.VcpuResult;
import java.lang.foreign.MemorySegment;
import java.util.List;
import org.junit.jupiter.api.Test;

/**
 * Exit delivery on the real KVM ({@link UffdPager.Delivery#VCPU_EXIT}): RAM registered with a
 * userfaultfd that takes user-mode faults only, so KVM's own access to a missing page fails and the
 * vCPU gets a memory-fault exit, serves the page on its own thread and re-enters.
 */
public class KvmExitDeliveryTest {
    static final long PAGE = FaultCore.PAGE, BASE = BootProtocol.IMAGE_MIN_GPA;

    /** An open /dev/kvm, or the test is skipped saying why (no usable /dev/kvm, or no userfaultfd). */
    public static KvmHypervisor kvmWithUserfaultfdOrSkip() {
        KvmUffdPagingTest.userfaultfdOrSkip();
        return KvmUffdPagingTest.kvmOrSkip();
    }


    /** Faults of the run per lane name: "vcpu-i" lanes are the vCPUs' own, "uffd-0" is the handler thread's. */
    public static long faultsOnLane(FaultCore core, String name) {
        for (FaultCore.Lane l : core.lanes()) if (l.name().equals(name)) return l.stats().faults();
        return 0;
    }

    static long memoryFaultExits(VcpuResult v) {
        return v.exitCounts().getOrDefault("memory_fault", 0L);
    }

    @Test
    void shouldInstallEachSharedPageOnceWhenEveryVcpuServesItsOwnFaultsOnTheSamePages() throws Exception {
        KvmHypervisor kvm = KvmUffdPagingTest.kvmOrSkip();
        KvmUffdPagingTest.userfaultfdOrSkip();
        int vcpus = 4;
        long from = 0x400000, pages = 2048, ram = from + pages * PAGE;
        StampSource source = new StampSource(BASE, (ram - BASE) / PAGE);
        FaultCore core = new FaultCore(source, BASE, ram - BASE, vcpus, Prefetch.NONE, false);
        UffdPager pager = new UffdPager(core, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
        MachineSpec spec = MachineSpec.of(ram, vcpus, KvmUffdPagingTest.sharedReader(from, ram)).withMemoryPreparer(pager)
                .withMainSlot(0, pager.faultHandler());
        try (kvm; Machine m = new Machine(kvm, spec)) {
            RunReport report = m.run();
            assertTrue(report.clean(), () -> report.vcpus().toString());
            assertNull(pager.failureMessage());
            long want = 0;
            for (long gpa = from; gpa < ram; gpa += PAGE) want += StampSource.word(gpa, 0, 1);
            long exits = 0;
            for (VcpuResult v : report.vcpus()) {
                assertEquals(want, v.regs().gpr[Regs.RBX], "sum read by vCPU " + v.index());
                exits += memoryFaultExits(v);
            }
            for (long gpa = from; gpa < ram; gpa += PAGE) assertEquals(1, source.fills.get((int) ((gpa - BASE) / PAGE)), "fills of 0x" + Long.toHexString(gpa));
            assertEquals(pages, new PagingStats(core).pagesInstalled(), "pages installed");
            long byVcpus = 0;
            for (int v = 0; v < vcpus; v++) byVcpus += faultsOnLane(core, "vcpu-" + v);
            assertEquals(pages, byVcpus, "every page was served by a vCPU's own thread");
            assertEquals(0, faultsOnLane(core, "uffd-0"), "the handler thread served no vCPU");
            assertTrue(exits >= pages, "memory-fault exits " + exits + " for " + pages + " pages");
        }
    }

    @Test
    void shouldRunTheSeqWriteWorkloadWithEveryPageFromTheSourceOnMinorModeMemfdRamWithReadahead() throws Exception {
        KvmHypervisor kvm = kvmWithUserfaultfdOrSkip();
        RunReport report = KvmUffdPagingTest.seqWriteFromSourceOnMemfd(kvm, new Prefetch.Readahead(16, 256, 0), w -> UffdPager.Config.exitDelivery(UffdPager.Mode.MINOR));
        for (VcpuResult v : report.vcpus()) assertTrue(memoryFaultExits(v) > 0, "vCPU " + v.index() + " served its own faults");
    }

    /** The page at {@code codeGpa} holds the only code: rbx = 0x51, then done 0; every other page is zeros. */
    static PageSource codePageSource(long codeGpa) {
        Assembler c = new Assembler(codeGpa);
        c.mov(EBX, 0x51).xor(EAX, EAX).out(BootProtocol.PORT_DONE, EAX);
        Label halt = c.here();
        c.hlt().jmp(halt);
        byte[] code = c.assemble();
        return new PageSource() {
            @Override
            public void fill(long gpa, MemorySegment dst, long offset, long len) {
                dst.asSlice(offset, len).fill((byte) 0);
                if (codeGpa >= gpa && codeGpa < gpa + len) MemorySegment.copy(MemorySegment.ofArray(code), 0, dst, offset + codeGpa - gpa, code.length);
            }

            @Override
            public String describe() { return "one code page at 0x" + Long.toHexString(codeGpa); }
        };
    }

    /** Runs {@code vcpus} vCPUs that all jump at once into the code page at 0x500000, which only the source has. */
    static RunReport jumpIntoMissingCode(KvmHypervisor kvm, int vcpus, FaultCore[] coreOut) {
        long codeGpa = 0x500000, ram = 0x600000;
        Assembler a = new Assembler(BootProtocol.DEFAULT_LOAD_GPA);
        a.movabs(RAX, codeGpa).jmp(RAX);
        GuestImage img = GuestImage.of(a.assemble(), BootProtocol.DEFAULT_LOAD_GPA, BootProtocol.DEFAULT_LOAD_GPA);
        FaultCore core = new FaultCore(codePageSource(codeGpa), BASE, ram - BASE, vcpus, Prefetch.NONE, false);
        coreOut[0] = core;
        UffdPager pager = new UffdPager(core, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
        MachineSpec spec = MachineSpec.of(ram, vcpus, img).withMemoryPreparer(pager).withMainSlot(0, pager.faultHandler()).withExitLogLimit(50);
        try (Machine m = new Machine(kvm, spec)) {
            return m.run();
        }
    }

    @Test
    void shouldServeAnInstructionFetchFromAMissingPageAsAnExecMemoryFault() throws Exception {
        KvmUffdPagingTest.userfaultfdOrSkip();
        try (KvmHypervisor kvm = KvmUffdPagingTest.kvmOrSkip()) {
            FaultCore[] core = new FaultCore[1];
            RunReport report = jumpIntoMissingCode(kvm, 1, core);
            VcpuResult v = report.vcpus().get(0);
            assertTrue(report.clean(), () -> report.vcpus().toString());
            assertEquals(0x51, v.regs().gpr[Regs.RBX]);
            assertTrue(v.exits().entries().stream().anyMatch(e -> e.exit().reason().equals("memory_fault")
                            && "0x4".equals(e.exit().fields().get("flags")) && "0x500000".equals(e.exit().fields().get("gpa"))),
                    () -> "an EXEC (0x4) memory fault at 0x500000 among " + v.exits().entries());
            assertEquals(1, faultsOnLane(core[0], "vcpu-0"), "the code page, served by the vCPU");
        }
    }

    /**
     * Four vCPUs fetch from the same missing code page at once, twenty times: a vCPU whose fetch failed
     * while another vCPU was installing the page finds it readable when it looks, and must run the
     * instruction rather than report an emulation failure.
     */
    @Test
    void shouldRunEveryVcpuWhenSeveralFetchFromOneMissingCodePageAtOnce() throws Exception {
        KvmUffdPagingTest.userfaultfdOrSkip();
        try (KvmHypervisor kvm = KvmUffdPagingTest.kvmOrSkip()) {
            for (int run = 0; run < 20; run++) {
                FaultCore[] core = new FaultCore[1];
                RunReport report = jumpIntoMissingCode(kvm, 4, core);
                int attempt = run;
                assertTrue(report.clean(), () -> "run " + attempt + ": " + report.vcpus());
                for (VcpuResult v : report.vcpus()) assertEquals(0x51, v.regs().gpr[Regs.RBX], "vCPU " + v.index());
                assertEquals(1, new PagingStats(core[0]).pagesInstalled(), "the code page, installed once");
            }
        }
    }

    @Test
    void shouldServeAHostThreadsTouchThroughTheHandlerThreadUnderExitDelivery() throws Exception {
        UffdPagingTest.assumeUserfaultfd();
        long pages = 64;
        StampSource source = new StampSource(BASE, pages);
        GuestRam ram = GuestRam.allocate(BASE + pages * PAGE, GuestRam.Backing.ANONYMOUS);
        FaultCore core = new FaultCore(source, BASE, pages * PAGE, 1, Prefetch.NONE, false);
        UffdPager pager = new UffdPager(core, UffdPager.Config.exitDelivery(UffdPager.Mode.MISSING));
        try (ram) {
            try (MemoryPreparer.Session _ = pager.prepare(new MemoryPreparer.Context(null, ram, 1, r -> { throw new AssertionError(r); }))) {
                for (long p = 0; p < pages; p += 3) {
                    long gpa = BASE + p * PAGE;
                    assertEquals(StampSource.word(gpa, 16, 1), Libc.loadLongInNative(ram.memory().address() + gpa + 16), "word of 0x" + Long.toHexString(gpa));
                }
            }
            assertEquals((pages + 2) / 3, faultsOnLane(core, "uffd-0"), "a user-mode fault still reaches the handler thread");
            assertEquals(0, faultsOnLane(core, "vcpu-0"));
        }
    }

    /** The probe runs its guest once per process and agrees with what the other tests here find. */
    @Test
    void shouldFindThatExitDeliveryWorksOnThisHostOnceAndKeepTheAnswer() throws Exception {
        try (KvmHypervisor kvm = kvmWithUserfaultfdOrSkip()) {
            dev.faultline.paging.uffd.ExitDeliveryProbe.Result r = dev.faultline.paging.uffd.ExitDeliveryProbe.on(kvm);
            assertTrue(r.works(), r.detail());
            assertSame(r, dev.faultline.paging.uffd.ExitDeliveryProbe.on(kvm), "kept");
            assertNull(dev.faultline.paging.uffd.ExitDeliveryProbe.unavailableReason(kvm));
        }
    }

    @Test
    void shouldRefuseExitDeliveryWithMoreThanOneHandlerOrASpinningOne() {
        IllegalArgumentException two = assertThrows(IllegalArgumentException.class,
                () -> new UffdPager.Config(UffdPager.Mode.MISSING, 2, 0, false, List.of(), UffdPager.Pinning.NONE).withDelivery(UffdPager.Delivery.VCPU_EXIT));
        assertTrue(two.getMessage().contains("1 handler, not 2"), two.getMessage());
        IllegalArgumentException spin = assertThrows(IllegalArgumentException.class,
                () -> new UffdPager.Config(UffdPager.Mode.MISSING, 1, 10_000, false, List.of(), UffdPager.Pinning.NONE).withDelivery(UffdPager.Delivery.VCPU_EXIT));
        assertTrue(spin.getMessage().contains("must not spin"), spin.getMessage());
    }
}
